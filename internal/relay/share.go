package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/net/netutil"

	"github.com/officeedge/appliance/netcfg"
)

// Block sharing between a box and its relay, both ways, over the tunnel: WireGuard's
// cryptokey routing makes a tunnel packet's source address its peer's own, so the box's
// tunnel address authenticates it and nothing else is needed. The relay serves, on its
// tunnel address of each office:
//
//	GET  /v1/blocks: the relay's own blocks (sipguard's and a person's), as []Block
//	POST /v1/blocks: the box's blocks, claimed as "relay:OFFICE"; each POST is the box's
//	     whole list: what it no longer lists is withdrawn
const (
	SharePort       = 8478
	SharePath       = "/v1/blocks"
	MaxShareBody    = 1 << 20 // bytes of a request or an answer
	MaxShareEntries = 4096
	// MaxShareFor caps a shared block (a permanent one included): the other side renews
	// what it still blocks at its next exchange, and what it forgets ends by itself.
	MaxShareFor = 7 * 24 * time.Hour
	maxReason   = 200
)

// Block is one shared block.
type Block struct {
	Prefix netip.Prefix `json:"prefix"`
	Until  time.Time    `json:"until,omitzero"` // zero: until unblocked where it was made
	Reason string       `json:"reason,omitempty"`
}

// ShareSource is the claim source of the blocks office's box pushed to the relay.
func ShareSource(office string) string { return "relay:" + office }

// ShareURL is the block-sharing endpoint on the relay's tunnel address of an office.
func ShareURL(relay netip.Addr) string {
	return "http://" + net.JoinHostPort(relay.String(), strconv.Itoa(SharePort)) + SharePath
}

// blockStore is the firewall owner, as the share server uses it.
type blockStore interface {
	State() *netcfg.BlockState
	BlockAll(rs []netcfg.BlockRequest) []error
	Withdraw(p netip.Prefix, source string) error
}

// shareServer serves one office's box on the relay's tunnel address of that office.
type shareServer struct {
	office string
	box    netip.Addr // the only source it answers
	store  blockStore
	log    *slog.Logger
	mu     sync.Mutex // one POST at a time: each replaces the office's claims
}

// ShareAnswer is what a POST returns.
type ShareAnswer struct {
	Accepted  int      `json:"accepted"`
	Refused   int      `json:"refused"`          // protected (a trunk, an admin network), expired, malformed
	Withdrawn int      `json:"withdrawn"`        // no longer listed by the box
	Errors    []string `json:"errors,omitempty"` // the first few refusals
}

func (s *shareServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	src, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || src.Addr().Unmap() != s.box {
		http.Error(w, "only the office's box may use this", http.StatusForbidden)
		return
	}
	if r.URL.Path != SharePath {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, ownBlocks(s.store.State(), time.Now()))
	case http.MethodPost:
		s.post(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ownBlocks are the relay's blocks that no box pushed (a box's blocks are not sent back to it
// nor to another office), at most MaxShareEntries, each with its longest claim.
func ownBlocks(st *netcfg.BlockState, now time.Time) []Block {
	out := []Block{}
	for _, e := range st.Entries {
		var b Block
		own, permanent := false, false
		for _, c := range e.Claims {
			if strings.HasPrefix(c.Source, "relay:") || (!c.Permanent() && !c.Until.After(now)) {
				continue
			}
			own = true
			if b.Reason == "" {
				b.Reason = c.Reason
			}
			permanent = permanent || c.Permanent()
			if c.Until.After(b.Until) {
				b.Until = c.Until
			}
		}
		if !own {
			continue
		}
		if permanent {
			b.Until = time.Time{}
		}
		b.Prefix = e.Prefix
		if out = append(out, b); len(out) == MaxShareEntries {
			break
		}
	}
	return out
}

// post takes the box's whole list of blocks.
func (s *shareServer) post(w http.ResponseWriter, r *http.Request) {
	blocks, err := readBlocks(http.MaxBytesReader(w, r.Body, MaxShareBody))
	if err != nil {
		code := http.StatusBadRequest
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || errors.Is(err, errTooMany) {
			code = http.StatusRequestEntityTooLarge
		}
		http.Error(w, err.Error(), code)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ans := s.claim(blocks, time.Now())
	if ans.Accepted > 0 || ans.Withdrawn > 0 {
		s.log.Info("relay: blocks shared by the box", "office", s.office, "accepted", ans.Accepted, "refused", ans.Refused, "withdrawn", ans.Withdrawn)
	}
	writeJSON(w, ans)
}

var errTooMany = fmt.Errorf("more than %d blocks", MaxShareEntries)

// readBlocks decodes a JSON array of blocks, one at a time, refusing more than MaxShareEntries.
func readBlocks(r io.Reader) ([]Block, error) {
	d := json.NewDecoder(r)
	if t, err := d.Token(); err != nil || t != json.Delim('[') {
		return nil, fmt.Errorf("relay: blocks: a JSON array is expected: %w", orBadJSON(err))
	}
	var out []Block
	for d.More() {
		if len(out) == MaxShareEntries {
			return nil, fmt.Errorf("relay: blocks: %w", errTooMany)
		}
		var b Block
		if err := d.Decode(&b); err != nil {
			return nil, fmt.Errorf("relay: blocks: entry %d: %w", len(out)+1, err)
		}
		out = append(out, b)
	}
	if _, err := d.Token(); err != nil {
		return nil, fmt.Errorf("relay: blocks: %w", err)
	}
	return out, nil
}

func orBadJSON(err error) error {
	if err == nil {
		return errors.New("not an array")
	}
	return err
}

// claim replaces the office's claims with blocks, in one write to the kernel.
func (s *shareServer) claim(blocks []Block, now time.Time) ShareAnswer {
	var ans ShareAnswer
	src := ShareSource(s.office)
	refuse := func(msg string) {
		ans.Refused++
		if len(ans.Errors) < 10 {
			ans.Errors = append(ans.Errors, msg)
		}
	}
	var reqs []netcfg.BlockRequest
	listed := map[netip.Prefix]bool{}
	for _, b := range blocks {
		p := b.Prefix
		if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			refuse("not an address or network")
			continue
		}
		p = p.Masked()
		until := b.Until
		if until.IsZero() || until.Sub(now) > MaxShareFor {
			until = now.Add(MaxShareFor)
		}
		if !until.After(now.Add(time.Second)) {
			refuse(p.String() + ": already expired")
			continue
		}
		reqs = append(reqs, netcfg.BlockRequest{Prefix: p, Source: src, By: "office " + s.office + "'s box",
			Reason: cleanReason(b.Reason), For: until.Sub(now)})
	}
	for i, err := range s.store.BlockAll(reqs) {
		if err != nil {
			refuse(err.Error())
			continue
		}
		ans.Accepted++
		listed[reqs[i].Prefix] = true
	}
	for _, e := range s.store.State().Entries {
		for _, c := range e.Claims {
			if c.Source == src && !listed[e.Prefix] {
				if err := s.store.Withdraw(e.Prefix, src); err == nil {
					ans.Withdrawn++
				}
			}
		}
	}
	return ans
}

// cleanReason keeps a box's reason printable and short: it is shown on the relay's status
// and logs.
func cleanReason(s string) string {
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	if len(s) > maxReason {
		s = strings.ToValidUTF8(s[:maxReason], "")
	}
	return "shared by the box: " + s
}

// listenShare listens on addr (the relay's tunnel address of an office): nothing on the
// public side, nor another office's box through its own address, reaches it there (the
// handler also checks the source).
func listenShare(addr netip.Addr) (net.Listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(addr.String(), strconv.Itoa(SharePort)))
	if err != nil {
		return nil, fmt.Errorf("relay: block sharing on %s: %w", addr, err)
	}
	return ln, nil
}

// serveShare serves one office on ln until ctx ends.
func serveShare(ctx context.Context, ln net.Listener, s *shareServer) error {
	// One box per address: a few connections are plenty, and a stuck one ends by itself.
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 8 << 10,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	err := srv.Serve(netutil.LimitListener(ln, 4))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ShareClient is the box's side of block sharing: Fetch reads the relay's blocks, Push sends
// the box's.
type ShareClient struct {
	Relay netip.Addr   // the relay's tunnel address
	HTTP  *http.Client // nil: one with a 10 s timeout
}

func (c ShareClient) client() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 10 * time.Second}
}

// Fetch returns the relay's own blocks (at most MaxShareEntries).
func (c ShareClient) Fetch(ctx context.Context) ([]Block, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ShareURL(c.Relay), nil)
	if err != nil {
		return nil, fmt.Errorf("relay: fetch blocks: %w", err)
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("relay: fetch blocks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("relay: fetch blocks: %s", answerErr(resp))
	}
	blocks, err := readBlocks(io.LimitReader(resp.Body, MaxShareBody))
	if err != nil {
		return nil, fmt.Errorf("relay: fetch blocks: %w", err)
	}
	return blocks, nil
}

// Push sends the box's whole list (the first MaxShareEntries of it): the relay claims them
// and withdraws what the box listed before and lists no more.
func (c ShareClient) Push(ctx context.Context, blocks []Block) (ShareAnswer, error) {
	blocks = append([]Block{}, blocks[:min(len(blocks), MaxShareEntries)]...) // nil would be "null"
	body, err := json.Marshal(blocks)
	if err != nil {
		return ShareAnswer{}, fmt.Errorf("relay: push blocks: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ShareURL(c.Relay), bytes.NewReader(body))
	if err != nil {
		return ShareAnswer{}, fmt.Errorf("relay: push blocks: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client().Do(req)
	if err != nil {
		return ShareAnswer{}, fmt.Errorf("relay: push blocks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ShareAnswer{}, fmt.Errorf("relay: push blocks: %s", answerErr(resp))
	}
	var ans ShareAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&ans); err != nil {
		return ShareAnswer{}, fmt.Errorf("relay: push blocks: the answer: %w", err)
	}
	return ans, nil
}

// answerErr is a refusal's status and its first words.
func answerErr(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
}
