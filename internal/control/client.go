package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/relay/box"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// ErrNotRunning means no daemon answered on the socket (the CLI then works offline where it can).
var ErrNotRunning = errors.New("is the appliance running?")

// maxAnswer bounds an answer read from the socket (a blocklist of half a million entries).
const maxAnswer = 512 << 20

// Client calls a running daemon's control API over its unix socket.
type Client struct {
	Socket  string        // DefaultSocket when empty
	Timeout time.Duration // per call; 30 s when 0
}

// Error is a request the daemon refused: its status code and its words.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// Call sends one request and returns the answer's body. A daemon that does not answer is
// ErrNotRunning; one that answers with an error status is an *Error carrying its message.
func (c Client) Call(ctx context.Context, method, path string, body io.Reader) ([]byte, error) {
	socket, timeout := c.Socket, c.Timeout
	if socket == "" {
		socket = DefaultSocket
	}
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	hc := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}},
	}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, method, "http://appliance"+path, body)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w %w", ErrNotRunning, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("control: %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return nil, &Error{Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
	}
	return b, nil
}

// Get is Call for a GET without a context.
func (c Client) Get(path string) ([]byte, error) {
	return c.Call(context.Background(), http.MethodGet, path, nil)
}

// do posts in as JSON (nil: no body) and decodes the answer into out (nil: ignored).
func (c Client) do(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("control: %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	b, err := c.Call(context.Background(), method, path, body)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("control: %s: answer: %w", path, err)
	}
	return nil
}

// WANStatus is the uplinks' health and the override.
func (c Client) WANStatus() (wan.Status, error) {
	var st wan.Status
	return st, c.do(http.MethodGet, PathWANStatus, nil, &st)
}

// RelayStatus is the voice relay's box side (`appliance relay status`).
func (c Client) RelayStatus() (box.Status, error) {
	var st box.Status
	return st, c.do(http.MethodGet, PathRelayStatus, nil, &st)
}

// Force sets the uplink override; the answer is the status after it.
func (c Client) Force(r ForceRequest) (wan.Status, error) {
	var st wan.Status
	return st, c.do(http.MethodPost, PathWANForce, r, &st)
}

// Blocklist is the owner's blocklist with its drop counters.
func (c Client) Blocklist() (BlocklistView, error) {
	var v BlocklistView
	return v, c.do(http.MethodGet, PathBlocklist, nil, &v)
}

// Block blocks by hand; the answer is the blocklist's entry.
func (c Client) Block(r BlockRequest) (netcfg.Entry, error) {
	var e netcfg.Entry
	return e, c.do(http.MethodPost, PathBlock, r, &e)
}

// Unblock removes the manual claims on a prefix; the answer is the entry as it was.
func (c Client) Unblock(r UnblockRequest) (netcfg.Entry, error) {
	var e netcfg.Entry
	return e, c.do(http.MethodPost, PathUnblock, r, &e)
}

// Alerts are the alerts kept.
func (c Client) Alerts() ([]alerts.Alert, error) {
	var as []alerts.Alert
	return as, c.do(http.MethodGet, PathAlerts, nil, &as)
}

// Acknowledge acknowledges every alert.
func (c Client) Acknowledge(r AckRequest) (AckAnswer, error) {
	var a AckAnswer
	return a, c.do(http.MethodPost, PathAlertsAck, r, &a)
}

// Press presses the simulated button and waits for the press to end.
func (c Client) Press(r ButtonRequest) (ButtonAnswer, error) {
	var a ButtonAnswer
	return a, c.do(http.MethodPost, PathButton, r, &a)
}

// Record adds a command-line action to the audit log.
func (c Client) Record(e audit.Entry) error { return c.do(http.MethodPost, PathAuditRecord, e, nil) }

// PostQuery posts to path with the query q and no body, returning the answer's body.
func (c Client) PostQuery(path string, q url.Values) ([]byte, error) {
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return c.Call(context.Background(), http.MethodPost, path, nil)
}

// GetJSON decodes the answer of a GET into out.
func (c Client) GetJSON(path string, out any) error { return c.do(http.MethodGet, path, nil, out) }
