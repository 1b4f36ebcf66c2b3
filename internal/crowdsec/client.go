// Package crowdsec makes the box a client of a CrowdSec Local API: a bouncer that pulls the
// fleet's decisions into the blocklist, and a machine that pushes sipguard's blocks as alerts.
package crowdsec

// A client by hand rather than CrowdSec's own go-cs-bouncer/apiclient: those modules pull in
// the whole crowdsec tree (and its database drivers) for two endpoints, and we want a hard cap
// on every answer's size and our own TLS pinning.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/version"
)

// Client talks to one LAPI.
type Client struct {
	base    *url.URL
	http    *http.Client
	maxBody int64

	apiKey    string // bouncer
	machineID string // machine
	password  string

	mu       sync.Mutex
	token    string
	tokenExp time.Time
}

// NewClient reads the credentials and TLS material cfg names. A credential file readable
// by others than the daemon is refused: it is the key to the whole fleet's blocklist.
func NewClient(cfg config.CrowdSec) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil {
		return nil, fmt.Errorf("crowdsec: url %q: %w", cfg.URL, err)
	}
	c := &Client{base: u, maxBody: int64(cfg.MaxBodyMB) << 20, machineID: cfg.MachineID}
	if cfg.BouncerKeyFile != "" {
		if c.apiKey, err = secret(cfg.BouncerKeyFile); err != nil {
			return nil, err
		}
	}
	if cfg.MachinePasswordFile != "" {
		if c.password, err = secret(cfg.MachinePasswordFile); err != nil {
			return nil, err
		}
	}
	tc, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.Proxy = nil
	c.http = &http.Client{Transport: tr, Timeout: 15 * time.Second}
	return c, nil
}

// secret reads a one-line credential file that only its owner may read.
func secret(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("crowdsec: credential: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("crowdsec: credential %s is readable by others (mode %s): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("crowdsec: credential: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" || strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("crowdsec: credential %s: want one line with the key or password", path)
	}
	return s, nil
}

func tlsConfig(cfg config.CrowdSec) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("crowdsec: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("crowdsec: ca_file %s: no PEM certificate in it", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.PinSHA256 != "" {
		pin, err := hex.DecodeString(cfg.PinSHA256)
		if err != nil {
			return nil, fmt.Errorf("crowdsec: pin_sha256: %w", err)
		}
		// A pinned certificate is trusted for itself: a self-signed LAPI has no chain. With a
		// CA as well, both must hold.
		withCA := tc.RootCAs != nil
		tc.InsecureSkipVerify = !withCA
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("crowdsec: the LAPI sent no certificate")
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if !bytes.Equal(sum[:], pin) {
				return fmt.Errorf("crowdsec: the LAPI's certificate (SHA-256 %x) is not the pinned one", sum)
			}
			return nil
		}
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("crowdsec: client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Bouncer reports whether the client may pull decisions; Machine whether it may push alerts.
func (c *Client) Bouncer() bool { return c.apiKey != "" }
func (c *Client) Machine() bool { return c.password != "" }

// Decision is one entry of the LAPI's decision stream.
type Decision struct {
	ID       int64  `json:"id"`
	Origin   string `json:"origin"`
	Scenario string `json:"scenario"`
	Scope    string `json:"scope"`
	Type     string `json:"type"`
	Value    string `json:"value"`
	Duration string `json:"duration"`
}

// Stream is one answer of /v1/decisions/stream: all decisions (startup) or the change since
// this bouncer's last pull.
type Stream struct {
	New     []Decision `json:"new"`
	Deleted []Decision `json:"deleted"`
}

// Pull asks for the decision stream; startup asks for every decision in force.
func (c *Client) Pull(ctx context.Context, startup bool) (Stream, error) {
	var s Stream
	q := "/v1/decisions/stream?startup=" + fmt.Sprint(startup)
	err := c.do(ctx, http.MethodGet, q, nil, func(r *http.Request) { r.Header.Set("X-Api-Key", c.apiKey) }, http.StatusOK, &s)
	return s, err
}

// Alert is what the box tells the LAPI about one block (the fields the LAPI requires).
type Alert struct {
	Scenario        string    `json:"scenario"`
	ScenarioHash    string    `json:"scenario_hash"`
	ScenarioVersion string    `json:"scenario_version"`
	Message         string    `json:"message"`
	EventsCount     int32     `json:"events_count"`
	StartAt         string    `json:"start_at"`
	StopAt          string    `json:"stop_at"`
	Capacity        int32     `json:"capacity"`
	Leakspeed       string    `json:"leakspeed"`
	Simulated       bool      `json:"simulated"`
	Remediation     bool      `json:"remediation"`
	Events          []Event   `json:"events"`
	Source          Source    `json:"source"`
	Labels          []string  `json:"labels"`
	Decisions       []Verdict `json:"decisions,omitempty"`
}

// Event is one piece of evidence with its metadata.
type Event struct {
	Timestamp string `json:"timestamp"`
	Meta      []Meta `json:"meta"`
}

// Meta is a key and value.
type Meta struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Source is who the alert is about.
type Source struct {
	Scope string `json:"scope"` // "Ip" or "Range"
	Value string `json:"value"`
	IP    string `json:"ip,omitempty"`
	Range string `json:"range,omitempty"`
}

// Verdict is a decision the box asks for with its alert (its own block's length).
type Verdict struct {
	Duration string `json:"duration"`
	Origin   string `json:"origin"`
	Scenario string `json:"scenario"`
	Scope    string `json:"scope"`
	Type     string `json:"type"`
	Value    string `json:"value"`
}

// Push sends alerts as the machine, logging in first when its token is missing or old.
func (c *Client) Push(ctx context.Context, alerts []Alert) error {
	for attempt := 0; ; attempt++ {
		tok, err := c.login(ctx)
		if err != nil {
			return err
		}
		body, err := json.Marshal(alerts)
		if err != nil {
			return fmt.Errorf("crowdsec: encode alerts: %w", err)
		}
		var ids []string
		err = c.do(ctx, http.MethodPost, "/v1/alerts", body, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }, http.StatusCreated, &ids)
		var he *HTTPError
		if errors.As(err, &he) && he.Status == http.StatusUnauthorized && attempt == 0 {
			c.mu.Lock()
			c.token = "" // expired or revoked: log in again, once
			c.mu.Unlock()
			continue
		}
		return err
	}
}

func (c *Client) login(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && time.Until(c.tokenExp) > time.Minute {
		return c.token, nil
	}
	body, _ := json.Marshal(map[string]any{"machine_id": c.machineID, "password": c.password,
		"scenarios": Scenarios()})
	var r struct {
		Token  string    `json:"token"`
		Expire time.Time `json:"expire"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/watchers/login", body, nil, http.StatusOK, &r); err != nil {
		return "", fmt.Errorf("crowdsec: log in as machine %s: %w", c.machineID, err)
	}
	if r.Token == "" {
		return "", fmt.Errorf("crowdsec: log in as machine %s: the LAPI gave no token", c.machineID)
	}
	if r.Expire.IsZero() {
		r.Expire = time.Now().Add(time.Hour)
	}
	c.token, c.tokenExp = r.Token, r.Expire
	return c.token, nil
}

// HTTPError is an answer with an unexpected status.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("the LAPI answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Body)
}

// do sends one request and decodes its answer into out, reading at most maxBody bytes: a
// LAPI (or something posing as one) that sends more is refused, not buffered.
func (c *Client) do(ctx context.Context, method, path string, body []byte, auth func(*http.Request), want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("crowdsec: %s %s: %w", method, path, err)
	}
	req.Header.Set("User-Agent", "officeedge-appliance/"+version.Version)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != nil {
		auth(req)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("crowdsec: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return fmt.Errorf("crowdsec: %s %s: read the answer: %w", method, path, err)
	}
	if int64(len(data)) > c.maxBody {
		return fmt.Errorf("crowdsec: %s %s: the answer is over %d MB (max_body_mb): refused", method, path, c.maxBody>>20)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("crowdsec: %s %s: %w", method, path, &HTTPError{Status: resp.StatusCode, Body: snippet(data)})
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("crowdsec: %s %s: the answer is not the JSON expected (%v): %s", method, path, err, snippet(data))
	}
	return nil
}

// snippet is the start of a body, printable, for an error message.
func snippet(b []byte) string {
	s := strings.ToValidUTF8(string(b[:min(len(b), 200)]), "?")
	s = strings.Map(func(r rune) rune {
		if r < ' ' {
			return ' '
		}
		return r
	}, s)
	if len(b) > 200 {
		s += "…"
	}
	return s
}
