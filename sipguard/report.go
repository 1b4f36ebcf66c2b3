package sipguard

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The IANA RDAP bootstrap data ships in the binary so that every report names the regional
// registry holding the offender's address without any lookup. This build cannot download the
// published files, so rdap_ipv4.json and rdap_ipv6.json are IANA's registry rebuilt in its own
// format from a public copy of its services (see their description); drop in the published
// files when IANA changes them.
var (
	//go:embed rdap_ipv4.json
	bootstrap4 []byte
	//go:embed rdap_ipv6.json
	bootstrap6 []byte
)

type rdapService struct {
	prefix netip.Prefix
	url    string
}

var (
	rdapOnce     sync.Once
	rdapServices []rdapService
)

func loadBootstrap() {
	for _, data := range [][]byte{bootstrap4, bootstrap6} {
		var f struct {
			Services [][][]string `json:"services"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			panic("sipguard: embedded RDAP bootstrap: " + err.Error()) // a build error
		}
		for _, s := range f.Services {
			if len(s) != 2 || len(s[1]) == 0 {
				continue
			}
			base := s[1][0]
			for _, u := range s[1] { // prefer https
				if strings.HasPrefix(u, "https://") {
					base = u
					break
				}
			}
			for _, p := range s[0] {
				if pfx, err := netip.ParsePrefix(p); err == nil {
					rdapServices = append(rdapServices, rdapService{pfx, base})
				}
			}
		}
	}
}

// RIR names the regional registry holding a, and its RDAP base URL, from the bootstrap data.
func RIR(a netip.Addr) (name, rdapURL string) {
	rdapOnce.Do(loadBootstrap)
	best := -1
	for i, s := range rdapServices {
		if s.prefix.Contains(a.Unmap()) && (best < 0 || s.prefix.Bits() > rdapServices[best].prefix.Bits()) {
			best = i
		}
	}
	if best < 0 {
		return "unknown (not in the RDAP bootstrap data)", ""
	}
	u := rdapServices[best].url
	for _, r := range []string{"afrinic", "apnic", "arin", "lacnic", "ripe"} {
		if strings.Contains(u, r) {
			return strings.ToUpper(r), u
		}
	}
	return u, u
}

// AbuseLookup finds RDAP abuse contacts, caching answers; it is only ever called off the
// detection path, with a deadline.
type AbuseLookup struct {
	Client *http.Client
	Base   string // RDAP service to ask instead of the address's registry (tests)
	mu     sync.Mutex
	cache  map[string]string // by RDAP base + /24 or /48
}

// Contact returns the abuse e-mail the registry publishes for a, or "" with an error.
func (l *AbuseLookup) Contact(ctx context.Context, a netip.Addr) (string, error) {
	_, base := RIR(a)
	if l.Base != "" {
		base = l.Base
	}
	if base == "" {
		return "", fmt.Errorf("rdap: no registry for %s", a)
	}
	bits := 24
	if a.Is6() {
		bits = 48
	}
	key := netip.PrefixFrom(a, bits).Masked().String()
	l.mu.Lock()
	if l.cache == nil {
		l.cache = map[string]string{}
	}
	c, ok := l.cache[key]
	l.mu.Unlock()
	if ok {
		return c, nil
	}
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimSuffix(base, "/")+"/ip/"+url.PathEscape(a.String()), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/rdap+json")
	client := l.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("rdap: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("rdap: %s answered %s", base, resp.Status)
	}
	var obj rdapObject
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&obj); err != nil {
		return "", fmt.Errorf("rdap: %w", err)
	}
	c = abuseEmail(obj.Entities)
	l.mu.Lock()
	if len(l.cache) >= 10000 {
		clear(l.cache) // a botnet spread over many networks must not grow it without bound
	}
	l.cache[key] = c
	l.mu.Unlock()
	return c, nil
}

type rdapObject struct {
	Entities []rdapEntity `json:"entities"`
}

type rdapEntity struct {
	Roles    []string          `json:"roles"`
	VCard    []json.RawMessage `json:"vcardArray"`
	Entities []rdapEntity      `json:"entities"`
}

// abuseEmail finds the email of the entity with role "abuse", however deeply nested.
func abuseEmail(es []rdapEntity) string {
	for _, e := range es {
		for _, r := range e.Roles {
			if r == "abuse" {
				if m := vcardEmail(e.VCard); m != "" {
					return m
				}
			}
		}
		if m := abuseEmail(e.Entities); m != "" {
			return m
		}
	}
	return ""
}

func vcardEmail(v []json.RawMessage) string {
	if len(v) != 2 {
		return ""
	}
	var props [][]json.RawMessage
	if json.Unmarshal(v[1], &props) != nil {
		return ""
	}
	for _, p := range props {
		var name, val string
		if len(p) == 4 && json.Unmarshal(p[0], &name) == nil && name == "email" && json.Unmarshal(p[3], &val) == nil {
			return val
		}
	}
	return ""
}

// Report is the abuse report written next to a block's pcap.
type Report struct {
	Offender     netip.Addr
	Reason       string
	Detail       string
	Registry     string
	RDAP         string
	AbuseContact string
	Counts       Counts
	First, Last  time.Time
	BlockedAt    time.Time
	BlockedFor   time.Duration
	Samples      []string
	Pcap         string
	PcapSHA256   string
	Box          string // the site name
}

// Text renders the report for a network's abuse desk.
func (r *Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Abuse report: SIP attack from %s\n\n", r.Offender)
	fmt.Fprintf(&b, "Offender address:   %s\n", r.Offender)
	fmt.Fprintf(&b, "Regional registry:  %s (from the IANA RDAP bootstrap data shipped with the appliance)\n", r.Registry)
	if r.RDAP != "" {
		fmt.Fprintf(&b, "RDAP service:       %s\n", r.RDAP)
	}
	contact := r.AbuseContact
	if contact == "" {
		contact = "not looked up (see the registry's RDAP service)"
	}
	fmt.Fprintf(&b, "Abuse contact:      %s\n", contact)
	fmt.Fprintf(&b, "Reported by:        %s\n", r.Box)
	fmt.Fprintf(&b, "What was seen:      %s: %s\n", r.Reason, r.Detail)
	fmt.Fprintf(&b, "First seen (UTC):   %s\n", r.First.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "Last seen (UTC):    %s\n", r.Last.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "Blocked at (UTC):   %s for %s\n", r.BlockedAt.UTC().Format(time.RFC3339), r.BlockedFor)
	c := r.Counts
	fmt.Fprintf(&b, "Counts:             %d requests (REGISTER %d, INVITE %d, OPTIONS %d, other %d); answers to it: %d challenges, %d forbidden, %d not found, %d ok\n",
		c.Requests, c.Register, c.Invite, c.Options, c.Other, c.Challenged, c.Forbidden, c.NotFound, c.OK)
	fmt.Fprintf(&b, "Packet capture:     %s (pcapng, sha256 %s)\n", r.Pcap, r.PcapSHA256)
	for i, s := range r.Samples {
		fmt.Fprintf(&b, "\nSample message %d:\n%s\n", i+1, s)
	}
	return b.String()
}
