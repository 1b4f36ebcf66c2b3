// Command bench-backup measures a 2 GB backup sent to a real S3 server (versitygw on
// loopback): throughput, and the peak memory of the process that encrypts, uploads and
// verifies it. It prints backup_2gb_mb_per_s=X and backup_2gb_peak_rss_mb=Y.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"

	"github.com/officeedge/appliance/internal/backup"
	"github.com/officeedge/appliance/internal/config"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-backup:", err)
		os.Exit(1)
	}
}

func run() error {
	size := flag.Int64("size", 2<<30, "bytes in the backup file")
	vgw := flag.String("versitygw", "bin/tools/versitygw-v1.8.0", "the versitygw binary")
	flag.Parse()
	dir, err := os.MkdirTemp("", "bench-backup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	addr, err := freePort()
	if err != nil {
		return err
	}
	s3root := filepath.Join(dir, "s3")
	if err := os.MkdirAll(s3root, 0o700); err != nil {
		return err
	}
	srv := exec.Command(*vgw, "--access", "bench", "--secret", "bench-secret", "--port", addr, "--quiet", "posix", s3root)
	if err := srv.Start(); err != nil {
		return fmt.Errorf("versitygw: %w", err)
	}
	defer func() { _ = srv.Process.Signal(syscall.SIGTERM); _ = srv.Wait() }()
	if err := waitPort(addr); err != nil {
		return err
	}
	// The backup: a sparse file (no disk used on this side); age's output is random anyway.
	medium := filepath.Join(dir, "medium")
	src := filepath.Join(medium, "pbx", "threecx", "3CXBackup-recordings.zip")
	if err := os.MkdirAll(filepath.Dir(src), 0o700); err != nil {
		return err
	}
	f, err := os.Create(src)
	if err != nil {
		return err
	}
	if err := errors.Join(f.Truncate(*size), f.Close()); err != nil {
		return err
	}
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("bench-secret"), 0o600); err != nil {
		return err
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	cfg := &config.Config{Backup: config.Backup{Dir: medium, At: "03:00", MaxAge: 26 * time.Hour, KeepDaily: 7, RetryMin: time.Second, RetryMax: time.Second,
		Destinations: []config.BackupDest{{Name: "s3", Kind: "s3", Recipient: id.Recipient().String(), Endpoint: addr, Bucket: "bench",
			Region: "us-east-1", AccessKey: "bench", SecretKeyFile: secret, InsecureHTTP: true}}}}
	state := filepath.Join(dir, "state")
	svc := backup.New(backup.Options{Config: func() *config.Config { return cfg }, StateDir: state,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	svc.Now()
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	for {
		m, err := backup.LoadManifest(state, "s3")
		if err != nil {
			return err
		}
		if len(m.Present()) > 0 {
			break
		}
		if m.LastError != "" {
			return errors.New(m.LastError)
		}
		select {
		case err := <-done:
			return fmt.Errorf("the service stopped: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	el := time.Since(start)
	cancel()
	<-done
	fmt.Printf("backup_2gb_mb_per_s=%.1f\n", float64(*size)/(1<<20)/el.Seconds())
	fmt.Printf("backup_2gb_peak_rss_mb=%.1f\n", peakRSS())
	return nil
}

// peakRSS is this process's peak resident memory (VmHWM), in MiB.
func peakRSS() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(v), "%f", &kb)
			return kb / 1024
		}
	}
	return -1
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitPort(addr string) error {
	for range 300 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("versitygw never listened on %s", addr)
}
