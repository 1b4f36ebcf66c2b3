package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/web"
)

func init() {
	commands["web"] = command{"passwd [--state DIR] [--print]: set the status page's password (read from the terminal or stdin); --print shows the hash for [web] password_hash instead; cert [--state DIR] [--config FILE]: the SHA-256 fingerprint of the page's HTTPS certificate, to check in the browser", webCmd}
	commands["notify"] = command{"test: send a test alert email now", notifyCmd}
}

func webCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("web", flag.ContinueOnError)
	state := fs.String("state", "/var/lib/appliance", "the daemon's state directory")
	socket := controlFlag(fs)
	print := fs.Bool("print", false, "print the hash for [web] password_hash instead of setting it on this box")
	cfgPath := fs.String("config", "/etc/appliance/appliance.toml", "the config (for a certificate it names)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 1 && pos[0] == "cert" {
		return certCmd(*state, *cfgPath, stdout)
	}
	if len(pos) != 1 || pos[0] != "passwd" {
		return errors.New("web: say `appliance web passwd` or `appliance web cert`")
	}
	pw, err := readPassword(stdin, stderr)
	if err != nil {
		return err
	}
	if *print {
		h, err := web.HashPassword(pw)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password_hash = %q\n", h)
		return nil
	}
	if err := web.SetPassword(*state, pw); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "password set (argon2id hash in %s/%s); it takes effect at the next login\n", *state, web.PasswordFile)
	auditCLI(*socket, "web.passwd", "", "password changed")
	return nil
}

// certCmd prints the fingerprint of the certificate the page serves: the one the config
// names, or the one the box made in its state directory.
func certCmd(state, cfgPath string, stdout io.Writer) error {
	fp, path := "", ""
	if cfg, err := config.Load(cfgPath); err == nil && cfg.Web.CertFile != "" {
		path = cfg.Web.CertFile
		fp, err = web.FileFingerprint(path)
		if err != nil {
			return fmt.Errorf("web cert: %w", err)
		}
	} else {
		path = filepath.Join(state, web.CertFile)
		if fp, err = web.CertFingerprint(state); err != nil {
			return fmt.Errorf("web cert: %w (the daemon makes it at its first start)", err)
		}
	}
	fmt.Fprintf(stdout, "SHA-256 fingerprint of %s:\n%s\n", path, fp)
	return nil
}

// readPassword reads the password twice from a terminal with echo off, or once from a pipe.
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	f, isFile := stdin.(*os.File)
	if isFile {
		if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			off := *t
			off.Lflag &^= unix.ECHO
			if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, &off); err == nil {
				defer unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
				r := bufio.NewReader(f)
				fmt.Fprint(stderr, "New password: ")
				a, _ := r.ReadString('\n')
				fmt.Fprint(stderr, "\nAgain: ")
				b, _ := r.ReadString('\n')
				fmt.Fprintln(stderr)
				if a != b {
					return "", errors.New("web: the passwords differ")
				}
				return strings.TrimRight(a, "\r\n"), nil
			}
		}
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("web: give the password on standard input")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func notifyCmd(args []string, _ io.Reader, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("notify", flag.ContinueOnError)
	socket := controlFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "test" {
		return errors.New("notify: say `appliance notify test`")
	}
	b, err := control.Client{Socket: *socket}.Call(context.Background(), http.MethodPost, control.PathNotifyTest, nil)
	if err != nil {
		return err
	}
	_, err = stdout.Write(b)
	return err
}
