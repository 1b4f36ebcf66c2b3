package daemon

// voiceMoveSpec is the part that moves voice off a flooded line (issue 23); off until built.
func voiceMoveSpec() partSpec {
	return partSpec{name: "voicemove", make: func(*App) (runner, error) { return nil, nil }}
}
