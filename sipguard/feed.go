package sipguard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/store"
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

func (g *Guard) feedPath(name string) string {
	if g.o.StateDir == "" {
		return ""
	}
	return filepath.Join(g.o.StateDir, "feed-"+name+".txt")
}

func (g *Guard) feedOf(p netip.Prefix) string {
	g.smu.Lock()
	defer g.smu.Unlock()
	for name, set := range g.feeds {
		if set[p] {
			return name
		}
	}
	return ""
}

// applyFeed puts a list in the kernel with a timeout of a few intervals, so a feed that
// stops listing an address lets it go, while a failed load keeps the last good list alive.
func (g *Guard) applyFeed(name string, ps []netip.Prefix, ttl time.Duration) int {
	set := map[netip.Prefix]bool{}
	n := 0
	for _, p := range ps {
		if g.neverBlocked(p) {
			continue
		}
		set[p] = true
		if err := g.o.Firewall.Block(p, ttl); err != nil {
			g.o.Log.Warn("sipguard: feed block", "feed", name, "prefix", p, "err", err)
			continue
		}
		n++
	}
	g.smu.Lock()
	if g.feeds == nil {
		g.feeds = map[string]map[netip.Prefix]bool{}
	}
	g.feeds[name] = set
	g.smu.Unlock()
	return n
}

// RunFeed imports a feed now and then every interval until ctx ends. A load that fails
// keeps (and refreshes) the last good list, including one saved before a restart.
func (g *Guard) RunFeed(ctx context.Context, f Feed, client *http.Client) {
	if client == nil {
		client = &http.Client{Timeout: 60 * time.Second}
	}
	if f.Interval <= 0 {
		f.Interval = time.Hour
	}
	ttl := 3 * f.Interval
	var good []netip.Prefix
	if p := g.feedPath(f.Name); p != "" {
		if data, err := os.ReadFile(p); err == nil {
			if ps, err := ParseText(bytes.NewReader(data)); err == nil {
				good = ps
				g.applyFeed(f.Name, good, ttl)
			}
		}
	}
	for {
		ps, err := f.Load(ctx, client)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			g.o.Log.Warn("sipguard: feed load failed; keeping the last good list", "feed", f.Name, "err", err, "kept", len(good))
			g.o.Bus.Publish(events.Event{Kind: "sipguard.feed", Severity: events.Warn, Source: "sipguard",
				Message: fmt.Sprintf("community list %s failed to load (%v); keeping the last good list of %d", f.Name, err, len(good))})
			g.applyFeed(f.Name, good, ttl)
		} else {
			good = ps
			n := g.applyFeed(f.Name, good, ttl)
			if p := g.feedPath(f.Name); p != "" {
				var b strings.Builder
				fmt.Fprintf(&b, "# community list %s, loaded %s\n", f.Name, time.Now().UTC().Format(time.RFC3339))
				for _, p := range good {
					b.WriteString(p.String() + "\n")
				}
				if err := store.WriteFile(p, []byte(b.String()), 0o600); err != nil {
					g.o.Log.Warn("sipguard: save feed", "err", err)
				}
			}
			g.o.Log.Info("sipguard: feed loaded", "feed", f.Name, "entries", len(good), "blocked", n)
			g.o.Bus.Publish(events.Event{Kind: "sipguard.feed", Severity: events.Info, Source: "sipguard",
				Message: fmt.Sprintf("community list %s loaded: %d entries", f.Name, len(good))})
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.Interval):
		}
	}
}

// FeedSize is how many entries of the named feed are in force.
func (g *Guard) FeedSize(name string) int {
	g.smu.Lock()
	defer g.smu.Unlock()
	return len(g.feeds[name])
}
