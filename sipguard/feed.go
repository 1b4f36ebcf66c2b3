package sipguard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/events"
)

// Feed is a community blocklist imported on a schedule.
type Feed struct {
	Name     string
	URL      string // http(s) URL; for APIBAN the key's base, e.g. https://apiban.org/api/KEY
	File     string // or a local file
	Format   string // "apiban" or "text"
	Interval time.Duration
}

const maxFeedBytes = 16 << 20

// ParseText reads one IP address or CIDR network a line; # starts a comment. Any bad line
// fails the whole load (a half-read list must not replace a good one).
func ParseText(r io.Reader) ([]netip.Prefix, error) {
	var out []netip.Prefix
	sc := bufio.NewScanner(io.LimitReader(r, maxFeedBytes))
	sc.Buffer(make([]byte, 4096), 4096)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		p, err := parsePrefix(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP network", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

type apibanPage struct {
	IPs []string        `json:"ipaddress"`
	ID  json.RawMessage `json:"ID"`
}

// parseAPIBAN reads one APIBAN page; next is the ID to ask for next ("" when done).
func parseAPIBAN(data []byte) (ps []netip.Prefix, next string, err error) {
	var pg apibanPage
	if err := json.Unmarshal(data, &pg); err != nil {
		return nil, "", fmt.Errorf("not an APIBAN answer: %w", err)
	}
	for _, s := range pg.IPs {
		p, err := parsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, "", err
		}
		ps = append(ps, p)
	}
	var id string
	if json.Unmarshal(pg.ID, &id) != nil {
		var n json.Number
		if json.Unmarshal(pg.ID, &n) == nil {
			id = n.String()
		}
	}
	if id == "none" || len(pg.IPs) == 0 {
		id = ""
	}
	return ps, id, nil
}

// Load fetches and parses the feed once.
func (f Feed) Load(ctx context.Context, client *http.Client) ([]netip.Prefix, error) {
	get := func(url string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxFeedBytes))
		if err != nil {
			return nil, err
		}
		// APIBAN answers 400 with {"ipaddress":[],"ID":"none"} when nothing is newer.
		if resp.StatusCode != 200 && !(f.Format == "apiban" && bytes.Contains(body, []byte(`"none"`))) {
			return nil, fmt.Errorf("%s answered %s", url, resp.Status)
		}
		return body, nil
	}
	if f.File != "" {
		data, err := os.ReadFile(f.File)
		if err != nil {
			return nil, err
		}
		if f.Format == "apiban" {
			ps, _, err := parseAPIBAN(data)
			return ps, err
		}
		return ParseText(bytes.NewReader(data))
	}
	if f.Format != "apiban" {
		data, err := get(f.URL)
		if err != nil {
			return nil, err
		}
		return ParseText(bytes.NewReader(data))
	}
	// APIBAN: /banned gives the first page and an ID; /banned/<ID> the next, until "none".
	var all []netip.Prefix
	url := strings.TrimSuffix(f.URL, "/") + "/banned"
	for page := 0; page < 1000; page++ {
		data, err := get(url)
		if err != nil {
			return nil, err
		}
		ps, next, err := parseAPIBAN(data)
		if err != nil {
			return nil, err
		}
		all = append(all, ps...)
		if next == "" {
			return all, nil
		}
		url = strings.TrimSuffix(f.URL, "/") + "/banned/" + next
	}
	return nil, fmt.Errorf("more than 1000 pages")
}

// FeedOptions say where a feed's lists go.
type FeedOptions struct {
	Blocker Blocker      // the owner: it keeps each list in force, and on disk, until keep runs out
	Bus     *events.Bus  // sipguard.feed events
	Log     *slog.Logger //
	Client  *http.Client // nil: one with a timeout, so a hung server only delays its own feed
}

// feedTimeout bounds one request to a feed server.
const feedTimeout = 60 * time.Second

// RunFeed loads a feed now and then every interval until ctx ends, and hands each good list
// to the owner, which keeps it for three intervals: a load that fails leaves the last good
// list in force (across restarts too) until it runs out.
func RunFeed(ctx context.Context, f Feed, o FeedOptions) {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: feedTimeout}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Bus == nil {
		o.Bus = events.New(100)
	}
	if f.Interval <= 0 {
		f.Interval = time.Hour
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		loadFeed(ctx, f, o)
		t.Reset(f.Interval)
	}
}

// loadFeed loads a feed once and, if it loaded, gives the list to the owner.
func loadFeed(ctx context.Context, f Feed, o FeedOptions) {
	ps, err := f.Load(ctx, o.Client)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		o.Log.Warn("sipguard: feed load failed; the last good list stays in force", "feed", f.Name, "err", err)
		o.Bus.Publish(events.Event{Kind: "sipguard.feed", Severity: events.Warn, Source: "sipguard", Fields: map[string]string{"feed": f.Name},
			Message: fmt.Sprintf("community list %s failed to load (%v); the last good list stays in force", f.Name, err)})
		return
	}
	r, err := o.Blocker.SetFeed(f.Name, ps, 3*f.Interval)
	if err != nil {
		o.Log.Warn("sipguard: feed not applied", "feed", f.Name, "err", err)
		o.Bus.Publish(events.Event{Kind: "sipguard.feed", Severity: events.Warn, Source: "sipguard", Fields: map[string]string{"feed": f.Name},
			Message: fmt.Sprintf("community list %s loaded (%d entries) but not applied: %v", f.Name, len(ps), err)})
		return
	}
	for i, e := range r.Refused {
		if i == 5 {
			o.Log.Info("sipguard: feed entries refused", "feed", f.Name, "more", len(r.Refused)-i)
			break
		}
		o.Log.Info("sipguard: feed entry refused", "feed", f.Name, "err", e)
	}
	o.Log.Info("sipguard: feed loaded", "feed", f.Name, "entries", r.Entries, "added", r.Added, "removed", r.Removed, "refused", len(r.Refused))
	o.Bus.Publish(events.Event{Kind: "sipguard.feed", Severity: events.Info, Source: "sipguard",
		Message: fmt.Sprintf("community list %s loaded: %d entries (%d added, %d removed, %d refused)", f.Name, r.Entries, r.Added, r.Removed, len(r.Refused)),
		Fields: map[string]string{"feed": f.Name, "entries": strconv.Itoa(r.Entries), "added": strconv.Itoa(r.Added),
			"removed": strconv.Itoa(r.Removed), "refused": strconv.Itoa(len(r.Refused))}})
}
