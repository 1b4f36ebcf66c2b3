// Package notify emails alerts (blocks, floods, toll fraud, failover, trunk state, config changes), grouping bursts and queueing on disk while mail is unreachable.
package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/store"
)

// Category says what an event is worth an email for, or "" when it is not.
// The other parts' event kinds are matched by their documented prefixes (uplink., wan.,
// trunk., sipguard., config., backup.) so that each works as soon as its events exist.
func Category(e events.Event) string {
	k := strings.ToLower(e.Kind)
	switch {
	case strings.HasPrefix(k, "notify."):
		return "" // never mail about mail
	case strings.HasPrefix(k, "trunk.") || strings.HasPrefix(k, "sipguard.trunk"):
		if strings.HasSuffix(k, ".down") {
			return "trunk down"
		}
		if strings.HasSuffix(k, ".up") {
			return "trunk up"
		}
	case strings.HasPrefix(k, "sipguard."):
		switch {
		case strings.Contains(k, "toll"):
			return "toll fraud"
		case strings.Contains(k, "flood"):
			return "flood"
		case strings.Contains(k, "unblock"), strings.Contains(k, "feed") && e.Severity != events.Alert:
			return ""
		case strings.Contains(k, "block"):
			return "block"
		case strings.Contains(k, "scan"), strings.Contains(k, "attack"):
			return "attack"
		case strings.Contains(k, "peer"):
			return "trusted peer misbehaving"
		case strings.Contains(k, "posture"):
			return "weak PBX setting"
		}
	case strings.HasPrefix(k, "uplink.") || strings.HasPrefix(k, "wan."):
		switch {
		case strings.Contains(k, "failover"):
			return "failover"
		case strings.Contains(k, "failback"):
			return "failback"
		case strings.Contains(k, "switch"):
			return "uplink switch"
		case strings.HasSuffix(k, "both_down"):
			return "offline: both uplinks down"
		case strings.HasSuffix(k, ".online"):
			return "back online"
		}
	case k == "config.changed":
		return "config changed"
	case k == "config.rejected":
		return "config refused"
	case strings.HasPrefix(k, "backup."):
		if strings.Contains(k, "fail") || strings.HasSuffix(k, ".stale") {
			return "backup failed" // a stale copy is a backup that did not happen
		}
		return "backup succeeded"
	}
	if e.Severity == events.Alert {
		return "alert"
	}
	return ""
}

// Message is one queued email, as kept on disk until it is sent. The recipients are read from
// the configuration at send time, so fixing a wrong address also fixes queued mail.
type Message struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Subject string    `json:"subject"`
	Body    string    `json:"body"`
	Events  int       `json:"events"`
}

// Notifier groups events into emails and sends them.
type Notifier struct {
	Config func() *config.Config
	Dir    string // the queue, in the state directory
	Bus    *events.Bus
	Log    *slog.Logger
	// MaxQueued caps the queue; the oldest messages go first (the box's disk is small).
	MaxQueued int

	wake    chan struct{}
	once    sync.Once
	started chan struct{}
	mu      sync.Mutex
	lastErr string
	sentAt  time.Time
}

// Status is the mail queue's state for the status page.
type Status struct {
	Enabled   bool      `json:"enabled"`
	Queued    int       `json:"queued"`
	LastError string    `json:"last_error,omitempty"`
	LastSent  time.Time `json:"last_sent,omitempty"`
}

// Status reports the queue.
func (n *Notifier) Status() Status {
	q, _ := n.queued()
	n.mu.Lock()
	defer n.mu.Unlock()
	return Status{Enabled: n.Config().Notify.Enabled(), Queued: len(q), LastError: n.lastErr, LastSent: n.sentAt}
}

// Started is closed once Run listens to the bus: events published after it are mailed.
func (n *Notifier) Started() <-chan struct{} { return n.startedCh() }

func (n *Notifier) startedCh() chan struct{} {
	n.once.Do(func() { n.started = make(chan struct{}) })
	return n.started
}

// Run groups events from the bus into emails and sends the queue until ctx ends.
func (n *Notifier) Run(ctx context.Context) error {
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return fmt.Errorf("notify: queue: %w", err)
	}
	if n.Log == nil {
		n.Log = slog.Default()
	}
	// A write cut short by a power loss leaves its temporary file (store.WriteFile's
	// ".ID.json.tmp*"), which is never a message: nothing else would ever remove it.
	if tmps, err := filepath.Glob(filepath.Join(n.Dir, ".*.json.tmp*")); err == nil {
		for _, p := range tmps {
			_ = os.Remove(p)
		}
	}
	n.wake = make(chan struct{}, 1)
	ch, unsub := n.Bus.Subscribe(4096)
	defer unsub()
	close(n.startedCh())
	// No send goes on after Run returns, however it ends.
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { n.sender(sctx) })
	defer wg.Wait()
	defer cancel() // before the wait

	var (
		pending []events.Event
		timer   *time.Timer
		fire    <-chan time.Time
	)
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if err := n.Enqueue(Compose(n.Config(), pending)); err != nil {
			n.Log.Error("notify", "err", err)
		}
		pending = nil
	}
	for {
		select {
		case <-ctx.Done():
			flush() // on disk: sent after the restart
			return nil
		case e, ok := <-ch:
			if !ok {
				return nil
			}
			if Category(e) == "" || !n.Config().Notify.Enabled() {
				continue
			}
			pending = append(pending, e)
			if timer == nil {
				timer = time.NewTimer(n.Config().Notify.Group)
				fire = timer.C
			}
		case <-fire:
			timer, fire = nil, nil
			flush()
		}
	}
}

// Compose makes one email of a burst of events: counts by category first (a flood of a
// thousand events is one line), then the events themselves up to a limit, their times in
// the site's zone.
func Compose(cfg *config.Config, evs []events.Event) Message {
	site := cfg.Site
	counts := map[string]int{}
	for _, e := range evs {
		counts[Category(e)]++
	}
	cats := make([]string, 0, len(counts))
	for c := range counts {
		cats = append(cats, c)
	}
	sort.Slice(cats, func(i, j int) bool {
		if counts[cats[i]] != counts[cats[j]] {
			return counts[cats[i]] > counts[cats[j]]
		}
		return cats[i] < cats[j]
	})
	var parts []string
	for _, c := range cats {
		parts = append(parts, fmt.Sprintf("%d× %s", counts[c], c))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "The office edge box at %s reports %d event(s) between %s and %s:\n\n",
		site, len(evs), cfg.Stamp(evs[0].Time), cfg.Stamp(evs[len(evs)-1].Time))
	for _, c := range cats {
		fmt.Fprintf(&b, "  %6d  %s\n", counts[c], c)
	}
	b.WriteString("\n")
	// Up to 10 events of each kind, so a flood does not hide the one block that matters.
	const show = 10
	for _, c := range cats {
		fmt.Fprintf(&b, "%s:\n", c)
		n := 0
		for _, e := range evs {
			if Category(e) != c {
				continue
			}
			if n++; n > show {
				continue
			}
			fmt.Fprintf(&b, "  %s  %-5s %-20s %s", cfg.Stamp(e.Time), e.Severity, e.Kind, e.Message)
			keys := make([]string, 0, len(e.Fields))
			for k := range e.Fields {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(&b, " %s=%s", k, e.Fields[k])
			}
			b.WriteString("\n")
		}
		if n > show {
			fmt.Fprintf(&b, "  ... and %d more (all of them are on the status page)\n", n-show)
		}
		b.WriteString("\n")
	}
	return Message{Created: time.Now().UTC(), Subject: fmt.Sprintf("[%s] %s", site, strings.Join(parts, ", ")), Body: b.String(), Events: len(evs)}
}

// Enqueue writes a message into the queue (atomically: a power cut leaves it whole or absent)
// and wakes the sender.
func (n *Notifier) Enqueue(m Message) error {
	if m.ID == "" {
		var r [6]byte
		_, _ = rand.Read(r[:])
		m.ID = fmt.Sprintf("%d-%s", m.Created.UnixNano(), hex.EncodeToString(r[:]))
	}
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return fmt.Errorf("notify: queue: %w", err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("notify: queue: %w", err)
	}
	if err := store.WriteFile(filepath.Join(n.Dir, m.ID+".json"), b, 0o600); err != nil {
		return fmt.Errorf("notify: queue: %w", err)
	}
	max := n.MaxQueued
	if max == 0 {
		max = 500
	}
	if q, err := n.queued(); err == nil && len(q) > max {
		for _, p := range q[:len(q)-max] {
			_ = os.Remove(p)
		}
	}
	if n.wake != nil {
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// queued lists the queue's files, oldest first (names start with the creation time).
func (n *Notifier) queued() ([]string, error) {
	q, err := filepath.Glob(filepath.Join(n.Dir, "*.json"))
	sort.Strings(q)
	return q, err
}

// sender sends queued mail, oldest first, retrying with backoff while the server is unreachable.
func (n *Notifier) sender(ctx context.Context) {
	backoff := time.Duration(0)
	failing := false
	for {
		if backoff > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			case <-n.wake:
			}
		}
		err := n.SendQueued(ctx)
		if err == nil {
			if failing {
				n.Bus.Publish(events.Event{Kind: "notify.sent", Source: "notify", Message: "alert emails are being delivered again"})
			}
			failing, backoff = false, 0
			select {
			case <-ctx.Done():
				return
			case <-n.wake:
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if !failing {
			n.Bus.Publish(events.Event{Kind: "notify.failed", Severity: events.Warn, Source: "notify", Message: "alert emails are queued: " + err.Error()})
		}
		failing = true
		backoff = min(max(2*backoff, 5*time.Second), 5*time.Minute)
		n.Log.Warn("notify: mail queued", "err", err, "retry", backoff)
	}
}

// SendQueued sends every queued message; it stops at the first failure (the server is
// unreachable: the rest would fail the same way).
func (n *Notifier) SendQueued(ctx context.Context) error {
	q, err := n.queued()
	if err != nil {
		return err
	}
	cfg := n.Config()
	if !cfg.Notify.Enabled() || len(q) == 0 {
		return nil
	}
	for _, p := range q {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var m Message
		if json.Unmarshal(b, &m) != nil {
			_ = os.Rename(p, p+".bad") // keep it for a person, never retry it forever
			continue
		}
		err = Send(ctx, cfg, m)
		n.mu.Lock()
		if err != nil {
			n.lastErr = err.Error()
		} else {
			n.lastErr, n.sentAt = "", time.Now()
		}
		n.mu.Unlock()
		if err != nil {
			return err
		}
		_ = os.Remove(p)
	}
	return nil
}

// Send delivers one message with the configured server: STARTTLS (required unless
// insecure_no_tls) then AUTH PLAIN. The client is emersion/go-smtp.
func Send(ctx context.Context, cfg *config.Config, m Message) error {
	nc := cfg.Notify
	host, _, _ := net.SplitHostPort(nc.Server)
	d := net.Dialer{Timeout: 20 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", nc.Server)
	if err != nil {
		return fmt.Errorf("notify: connect to %s: %w", nc.Server, err)
	}
	// Deadlines on the raw connection too: the greeting and STARTTLS happen before the
	// client's own timeouts apply. The end of ctx ends the exchange at once.
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	var c *smtp.Client
	if nc.InsecureNoTLS {
		c = smtp.NewClient(conn)
	} else {
		tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if nc.CAFile != "" {
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			pem, err := os.ReadFile(nc.CAFile)
			if err != nil {
				conn.Close()
				return fmt.Errorf("notify: ca_file: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				conn.Close()
				return fmt.Errorf("notify: ca_file %s holds no PEM certificate", nc.CAFile)
			}
			tc.RootCAs = pool
		}
		if c, err = smtp.NewClientStartTLS(conn, tc); err != nil {
			return fmt.Errorf("notify: STARTTLS with %s (set insecure_no_tls only for a relay on the LAN): %w", nc.Server, err)
		}
	}
	c.CommandTimeout, c.SubmissionTimeout = 30*time.Second, 2*time.Minute
	defer c.Close()
	hostname, _ := os.Hostname()
	if err := c.Hello(hostname); err != nil {
		return fmt.Errorf("notify: %s: %w", nc.Server, err)
	}
	if nc.Username != "" {
		pass := nc.Password
		if nc.PasswordFile != "" {
			b, err := os.ReadFile(nc.PasswordFile)
			if err != nil {
				return fmt.Errorf("notify: password_file: %w", err)
			}
			pass = strings.TrimSpace(string(b))
		}
		if err := c.Auth(sasl.NewPlainClient("", nc.Username, pass)); err != nil {
			return fmt.Errorf("notify: log in to %s as %s: %w", nc.Server, nc.Username, err)
		}
	}
	if err := c.SendMail(nc.From, nc.To, bytes.NewReader(render(nc.From, nc.To, m))); err != nil {
		return fmt.Errorf("notify: send to %s: %w", nc.Server, err)
	}
	_ = c.Quit()
	return nil
}

func render(from string, to []string, m Message) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@appliance>\r\n",
		from, strings.Join(to, ", "), mime.QEncoding.Encode("utf-8", m.Subject), m.Created.Format(time.RFC1123Z), m.ID)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\nAuto-Submitted: auto-generated\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(m.Body, "\n", "\r\n")))
	_ = qp.Close()
	return b.Bytes()
}

// ErrDisabled means no mail server is configured.
var ErrDisabled = errors.New("notify: no mail server configured ([notify] server)")

// Test sends a test email now, bypassing the queue.
func (n *Notifier) Test(ctx context.Context) error {
	cfg := n.Config()
	if !cfg.Notify.Enabled() {
		return ErrDisabled
	}
	return Send(ctx, cfg, Message{ID: fmt.Sprint(time.Now().UnixNano()), Created: time.Now().UTC(), Subject: "[" + cfg.Site + "] test email", Body: "Alert emails from the office edge box reach you.\n"})
}
