package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"text/tabwriter"
	"time"

	"filippo.io/age"

	"github.com/officeedge/appliance/internal/backup"
	"github.com/officeedge/appliance/internal/backup/drsheet"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/control"
)

func init() {
	commands["backup"] = command{"status|now|list [--json] | restore --identity FILE [--destination NAME] [--to DIR] [OBJECT...]: backups of the PBX and the box", backupCmd}
	commands["dr-sheet"] = command{"[--config FILE] [--state DIR]: print the disaster-recovery sheet", drSheetCmd}
}

func backupCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "restore" {
		return backupRestore(args[1:], stdout)
	}
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	socket := controlFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	cfgPath := fs.String("config", "/etc/appliance/appliance.toml", "the daemon's config (times are written in its site's zone)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("backup: use `backup status|now|list [--json]` or `backup restore --identity FILE ...`")
	}
	c := control.Client{Socket: *socket}
	var body []byte
	switch pos[0] {
	case "status":
		body, err = c.Get(control.PathBackupStatus)
	case "now":
		body, err = c.PostQuery(control.PathBackupNow, url.Values{"who": {cliUser()}})
	case "list":
		body, err = c.Get(control.PathBackupList)
	default:
		return fmt.Errorf("backup: unknown %q: use status, now, list or restore", pos[0])
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if *asJSON {
		_, err = stdout.Write(body)
		return err
	}
	if pos[0] == "list" {
		var ms map[string]*backup.Manifest
		if err := json.Unmarshal(body, &ms); err != nil {
			return fmt.Errorf("backup: list: %w", err)
		}
		return writeList(stdout, ms, siteZone(*cfgPath))
	}
	var st backup.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("backup: status: %w", err)
	}
	if pos[0] == "now" {
		fmt.Fprintln(stdout, "backup run started; `appliance backup status` follows it")
	}
	return writeStatus(stdout, st, time.Now(), siteZone(*cfgPath))
}

func writeStatus(w io.Writer, st backup.Status, now time.Time, site *config.Config) error {
	if !st.Enabled {
		_, err := fmt.Fprintln(w, "backups are off ([backup] dir is not set)")
		return err
	}
	fmt.Fprintf(w, "medium (copy 2): %s\nnext run: %s\n", st.Dir, site.Stamp(st.NextRun))
	if st.Endpoint != "" {
		fmt.Fprintf(w, "push endpoint: %s\n", st.Endpoint)
	}
	if st.Busy != "" {
		fmt.Fprintf(w, "now: %s\n", st.Busy)
	}
	if st.Waiting != "" {
		fmt.Fprintf(w, "waiting: %s\n", st.Waiting)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DESTINATION\tWHERE\tNEWEST VERIFIED\tSIZE\tAGE\tCOPIES\tSTATE")
	for _, d := range st.Destinations {
		newest, size, age := "-", "-", "-"
		if d.Newest != nil {
			newest, size = d.Newest.File, fmt.Sprint(d.Newest.Size)
			age = (time.Duration(d.AgeS) * time.Second).Round(time.Minute).String()
		}
		state := "ok"
		switch {
		case d.Stale:
			state = "STALE: " + d.StaleWhy
		case d.Newest == nil:
			state = "no verified copy yet"
		}
		if d.LastError != "" {
			state += fmt.Sprintf(" (%d failed, retry %s: %s)", d.Attempts, site.Stamp(d.NextRetry), d.LastError)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", d.Name, d.Where, newest, size, age, d.Copies, state)
	}
	return tw.Flush()
}

func writeList(w io.Writer, ms map[string]*backup.Manifest, site *config.Config) error {
	names := make([]string, 0, len(ms))
	for n := range ms {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DESTINATION\tOBJECT\tSIZE\tVERIFIED\tSHA-256")
	for _, n := range names {
		for _, e := range ms[n].Present() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", n, e.Object, e.Size, site.Stamp(e.Verified), e.SHA256)
		}
	}
	return tw.Flush()
}

// backupRestore is the restore drill: it runs here, not in the daemon, so the identity
// (brought by the admin) never reaches the running box's state.
func backupRestore(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("backup restore", flag.ContinueOnError)
	path := fs.String("config", "/etc/appliance/appliance.toml", "config file")
	state := fs.String("state", "/var/lib/appliance", "the appliance's state directory (the manifests)")
	identity := fs.String("identity", "", "the destination's age identity file (required; never keep it on the box)")
	dest := fs.String("destination", "", "destination to restore from (default: the first)")
	to := fs.String("to", "restored", "folder to decrypt into")
	objects, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *identity == "" {
		return errors.New("backup restore: --identity FILE is required (the destination's age private key)")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	f, err := os.Open(*identity)
	if err != nil {
		return fmt.Errorf("backup restore: %w", err)
	}
	ids, err := age.ParseIdentities(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("backup restore: %s: %w", *identity, err)
	}
	var d *config.BackupDest
	for i := range cfg.Backup.Destinations {
		if *dest == "" || cfg.Backup.Destinations[i].Name == *dest {
			d = &cfg.Backup.Destinations[i]
			break
		}
	}
	if d == nil {
		return fmt.Errorf("backup restore: no destination %q in [[backup.destination]]", *dest)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rs, err := backup.RestoreCopies(ctx, *d, *state, ids, *to, objects, nil)
	for _, r := range rs {
		check := "SHA-256 matches the manifest"
		if !r.Checked {
			check = "decrypted whole (no manifest entry to check it by)"
		}
		fmt.Fprintf(stdout, "%s -> %s (%d bytes): %s\n", r.Object, r.Path, r.Size, check)
	}
	if err != nil {
		return fmt.Errorf("backup restore: %w", err)
	}
	fmt.Fprintf(stdout, "restored %d file(s) from %s into %s\n", len(rs), d.Name, *to)
	return nil
}

func drSheetCmd(args []string, _ io.Reader, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("dr-sheet", flag.ContinueOnError)
	path := fs.String("config", "/etc/appliance/appliance.toml", "config file")
	state := fs.String("state", "/var/lib/appliance", "the appliance's state directory (the backups' manifests)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	st := backup.ReadStatus(cfg, *state, time.Now())
	return drsheet.New(cfg, &st, time.Now()).WriteText(stdout)
}
