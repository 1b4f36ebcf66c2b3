package setup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/cfgedit"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/setupcode"
	"github.com/officeedge/appliance/internal/store"
)

// Files on the boot partition.
const (
	BootConfig   = "appliance.toml"            // a config to take
	BootRejected = "appliance.toml.rejected"   // one with errors, kept for the person to fix
	BootErrors   = "appliance.toml.errors.txt" // its errors, one per line
	BootCode     = "setup-code.txt"            // a setup code to use instead of the box's own
	// BootMount is where the boot partition is mounted when it is not already.
	BootMount = "/run/appliance/boot"
)

// maxErrorsFile bounds what is read back of an errors file (the page shows it).
const maxErrorsFile = 64 << 10

// ImportOptions say where a config from the boot partition goes.
type ImportOptions struct {
	Dir      string // the boot partition, mounted
	Baked    string // the image's config (--config), "" or missing on a generic image
	Writable string // the writable config (--writable-config)
	StateDir string // the setup code and the audit log
	Log      *slog.Logger
}

// Imported is what Import did.
type Imported struct {
	Config bool     // appliance.toml was taken as the writable config
	Code   bool     // setup-code.txt replaced the setup code
	Errors []string // the errors of a rejected config (this one or one rejected earlier), for the page
}

// Import takes what the person put on the boot partition: setup-code.txt becomes the setup
// code, and appliance.toml is checked as `appliance check` does: a good one becomes the
// writable config (without confirm-or-revert: it is the person's deliberate choice) and is
// removed from the partition; one with errors is renamed appliance.toml.rejected, with its
// errors written next to it. Errors says what is wrong with a rejected config still there.
func Import(o ImportOptions) (Imported, error) {
	var im Imported
	var errs []error
	if code, err := readCode(filepath.Join(o.Dir, BootCode)); err != nil {
		errs = append(errs, err)
	} else if code != "" {
		if err := setupcode.Save(o.StateDir, code); err != nil {
			errs = append(errs, err)
		} else {
			im.Code = true
			o.Log.Info("setup code taken from the boot partition", "file", BootCode)
		}
	}
	took, err := importConfig(o)
	im.Config = took
	if err != nil {
		errs = append(errs, err)
	}
	im.Errors = RejectedErrors(o.Dir)
	return im, errors.Join(errs...)
}

// readCode is the first line of setup-code.txt, "" when there is none.
func readCode(path string) (string, error) {
	b, err := store.ReadBounded(path, 4096)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(strings.TrimPrefix(line, "\ufeff")) // Notepad may add a BOM
	if !setupcode.Valid(line) {
		return "", fmt.Errorf("setup: %s:1: a setup code is 6 to 32 letters, digits or dashes: the box's own code is used", BootCode)
	}
	return line, nil
}

// importConfig takes appliance.toml if it is there; took says it became the writable config.
func importConfig(o ImportOptions) (took bool, err error) {
	path := filepath.Join(o.Dir, BootConfig)
	data, err := store.ReadBounded(path, config.MaxFileSize)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	// Compared with the config it replaces (the writable one, else the image's), to say what
	// it opens; nil on a box without one, whose first config opens everything it names.
	cur, cerr := os.ReadFile(o.Writable)
	if cerr != nil {
		cur, _ = os.ReadFile(o.Baked)
	}
	var problems []string
	var c cfgedit.Check
	switch {
	case errors.Is(err, store.ErrTooBig):
		problems = []string{fmt.Sprintf("%s: the file is more than 1 MiB: a config may be at most %d bytes: is this the right file?", BootConfig, config.MaxFileSize)}
	case err != nil:
		return false, err
	default:
		c = cfgedit.CheckFile(BootConfig, cur, data)
		for _, p := range c.Errors {
			problems = append(problems, p.Text)
		}
	}
	if len(problems) > 0 {
		return false, reject(o, problems)
	}
	if err := cfgedit.Import(o.Baked, o.Writable, data); err != nil {
		return false, err
	}
	after := "from the boot partition's " + BootConfig
	if len(cur) > 0 && len(c.Widening) > 0 {
		// Taken all the same (whoever holds the card owns the box), but never without a word.
		o.Log.Warn("the config from the boot partition lets more of the internet reach the office", "widening", c.Widening)
		after += "; it lets more of the internet in: " + strings.Join(c.Widening[:min(len(c.Widening), 5)], "; ")
		if len(c.Widening) > 5 {
			after += fmt.Sprintf(" (and %d more)", len(c.Widening)-5)
		}
	}
	// Taken: the plain file goes (it may hold a password hash and keys), and with it an
	// earlier rejection, which this config supersedes.
	for _, name := range []string{BootConfig, BootRejected, BootErrors} {
		if err := store.Remove(filepath.Join(o.Dir, name)); err != nil {
			o.Log.Error("setup: the config was taken, but the file on the boot partition could not be removed", "err", err)
		}
	}
	unix.Sync()
	o.Log.Info("config taken from the boot partition", "file", BootConfig, "to", o.Writable)
	if err := audit.Open(filepath.Join(o.StateDir, "audit.log")).Record(audit.Entry{Who: "boot partition", From: "box",
		Via: "config", What: "config.changed", After: after}); err != nil {
		o.Log.Error("audit", "err", err)
	}
	return true, nil
}

// reject renames the config with errors and writes its errors next to it.
func reject(o ImportOptions, problems []string) error {
	src := filepath.Join(o.Dir, BootConfig)
	if err := os.Rename(src, filepath.Join(o.Dir, BootRejected)); err != nil {
		return fmt.Errorf("setup: %s has errors, and could not be renamed: %w", BootConfig, err)
	}
	text := "The box did not take " + BootConfig + ": fix these errors, save the file as " + BootConfig + " again and restart the box.\n" +
		strings.Join(problems, "\n") + "\n"
	if err := store.WriteFile(filepath.Join(o.Dir, BootErrors), []byte(text), 0o644); err != nil {
		return fmt.Errorf("setup: write %s: %w", BootErrors, err)
	}
	unix.Sync()
	for _, p := range problems {
		o.Log.Error("the config on the boot partition has errors: it was renamed "+BootRejected, "error", p)
	}
	return nil
}

// RejectedErrors are the errors written next to a rejected config on the boot partition
// (nil when there is none): what the setup page shows, and the alert when the box runs from
// an earlier config.
func RejectedErrors(dir string) []string {
	if _, err := os.Stat(filepath.Join(dir, BootRejected)); err != nil {
		return nil
	}
	b, err := store.ReadBounded(filepath.Join(dir, BootErrors), maxErrorsFile)
	if err != nil && !errors.Is(err, store.ErrTooBig) {
		return []string{BootRejected + ": its errors could not be read: " + err.Error()}
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() && len(out) < 100 {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "The box did not take") {
			out = append(out, l)
		}
	}
	return out
}

// MountBoot mounts the boot partition (FAT partition 1 of the disk holding the root file
// system) at target, and returns how to unmount it.
func MountBoot(target string) (unmount func() error, err error) {
	root, err := rootDevice("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return mountBootOf(root, target)
}

// mountBootOf mounts partition 1 of the disk holding the partition root (MAJ:MIN) at target.
func mountBootOf(root, target string) (unmount func() error, err error) {
	dev, err := bootPartition("/sys", root)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return nil, fmt.Errorf("setup: boot partition: %w", err)
	}
	if err := unix.Mount(dev, target, "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return nil, fmt.Errorf("setup: mount the boot partition %s at %s: %w", dev, target, err)
	}
	return func() error {
		unix.Sync()
		if err := unix.Unmount(target, 0); err != nil {
			return fmt.Errorf("setup: unmount the boot partition: %w", err)
		}
		return nil
	}, nil
}

// rootDevice is the MAJ:MIN of the file system mounted at "/", from a mountinfo file.
func rootDevice(mountinfo string) (string, error) {
	b, err := store.ReadBounded(mountinfo, 1<<20)
	if err != nil && !errors.Is(err, store.ErrTooBig) {
		return "", fmt.Errorf("setup: find the root file system: %w", err)
	}
	var dev string
	for _, line := range strings.Split(string(b), "\n") {
		// id parent MAJ:MIN root mountpoint ...; the last "/" mount is the one in force.
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == "/" {
			dev = f[2]
		}
	}
	if dev == "" {
		return "", errors.New("setup: find the root file system: no mount at / in " + mountinfo)
	}
	return dev, nil
}

// bootPartition is /dev/NAME of partition 1 of the disk holding the partition majmin, by
// sysfs: /sys/dev/block/MAJ:MIN is the partition's directory, inside its disk's.
func bootPartition(sys, majmin string) (string, error) {
	part, err := filepath.EvalSymlinks(filepath.Join(sys, "dev", "block", majmin))
	if err != nil {
		return "", fmt.Errorf("setup: find the boot partition: the root file system's device %s: %w", majmin, err)
	}
	if _, err := os.Stat(filepath.Join(part, "partition")); err != nil {
		return "", fmt.Errorf("setup: find the boot partition: the root file system (%s) is not on a partition", filepath.Base(part))
	}
	disk := filepath.Dir(part)
	des, err := os.ReadDir(disk)
	if err != nil {
		return "", fmt.Errorf("setup: find the boot partition: %w", err)
	}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(disk, de.Name(), "partition"))
		if err == nil && strings.TrimSpace(string(b)) == "1" {
			return "/dev/" + de.Name(), nil
		}
	}
	return "", fmt.Errorf("setup: find the boot partition: %s has no partition 1", filepath.Base(disk))
}
