package setup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/setupcode"
)

// The boot partition on a real FAT file system: a disk image with a FAT partition 1 and a
// root partition 2 on a loop device; the finder walks sysfs from partition 2 to partition 1,
// mounts it, and the import takes the config and removes it from the FAT for good.
func TestBootPartitionVFAT(t *testing.T) {
	labtest.RequireRoot(t, "losetup", "sfdisk", "mkfs.vfat", "partx")
	img := filepath.Join(t.TempDir(), "su1disk.img")
	run := func(stdin string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(40 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	run("label: dos\n,16M,c\n,,83\n", "sfdisk", "-q", img)
	loop := run("", "losetup", "-P", "--find", "--show", img)
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", loop).Run() })
	_ = exec.Command("partx", "-a", loop).Run() // where losetup -P leaves the partitions unscanned
	labtest.WaitFor(t, "the loop device's partitions", 10*time.Second, func() bool {
		_, err1 := os.Stat(loop + "p1")
		_, err2 := os.Stat(loop + "p2")
		return err1 == nil && err2 == nil
	})
	run("", "mkfs.vfat", "-n", "SU1BOOT", loop+"p1")
	root := strings.TrimSpace(run("", "cat", "/sys/class/block/"+filepath.Base(loop)+"p2/dev"))
	if dev, err := bootPartition("/sys", root); err != nil || dev != loop+"p1" {
		t.Fatalf("boot partition of %s (%s): %q %v, want %sp1", root, loop+"p2", dev, err, loop)
	}
	if _, err := bootPartition("/sys", strings.TrimSpace(run("", "cat", "/sys/class/block/"+filepath.Base(loop)+"/dev"))); err == nil {
		t.Fatal("a whole disk as the root file system was taken for a partition")
	}

	mnt := filepath.Join(t.TempDir(), "boot")
	unmount, err := mountBootOf(root, mnt)
	if fs, _ := os.ReadFile("/proc/filesystems"); !strings.Contains(string(fs), "\tvfat\n") {
		// This kernel has no FAT (the box's has: image/kernel/fragments): the finder and the
		// mount's error are what can be checked here; TestBootImport covers the import.
		if err == nil || !strings.Contains(err.Error(), loop+"p1") {
			t.Fatalf("mount without vfat in the kernel: %v, want an error naming %sp1", err, loop)
		}
		t.Logf("no vfat in this kernel: checked the partition finder on %s and the mount's error (%v)", loop, err)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			_ = unmount()
		}
	})
	writeFile(t, filepath.Join(mnt, BootConfig), string(config.Example()))
	writeFile(t, filepath.Join(mnt, BootCode), "FAT-CODE-1\n")
	o := importDirs(t, mnt)
	im, err := Import(o)
	if err != nil || !im.Config || !im.Code {
		t.Fatalf("import from FAT: %+v %v", im, err)
	}
	if err := unmount(); err != nil {
		t.Fatal(err)
	}
	mounted = false
	// Read back from the device, as the person's PC would see the card.
	unmount, err = mountBootOf(root, mnt)
	if err != nil {
		t.Fatal(err)
	}
	mounted = true
	if _, err := os.Stat(filepath.Join(mnt, BootConfig)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the config is still on the FAT partition: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, BootCode)); err != nil {
		t.Fatalf("setup-code.txt is gone: %v", err)
	}
	if c, _ := setupcode.Load(o.StateDir); c != "FAT-CODE-1" {
		t.Fatalf("code %q", c)
	}
}
