package daemon

// callsSpec is the calls part (issue 22/23); switched off until it is built.
func callsSpec() partSpec {
	return partSpec{name: "calls", make: func(*App) (runner, error) { return nil, nil }}
}
