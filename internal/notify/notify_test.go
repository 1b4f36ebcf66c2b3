package notify

import (
	"context"
	"errors"
	"io"
	"mime"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/notify/notifytest"
)

func startMailServer(t *testing.T, addr string) *notifytest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return notifytest.Serve(t, ln, net.ParseIP("127.0.0.1"))
}

func testConfig(t *testing.T, server, caFile string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.toml", config.Example())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Site = "Test Office"
	cfg.Notify = config.Notify{Server: server, Username: notifytest.User, Password: notifytest.Password,
		From: "box@example.net", To: []string{"it@example.net", "boss@example.net"}, CAFile: caFile, Group: time.Second}
	return cfg
}

func startNotifier(t *testing.T, cfg *config.Config, dir string, bus *events.Bus) (stop func()) {
	n := &Notifier{Config: func() *config.Config { return cfg }, Dir: dir, Bus: bus}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	// Run subscribes to the bus first thing; wait until it has, so no event is missed.
	select {
	case <-n.Started():
	case <-time.After(5 * time.Second):
		t.Fatal("the notifier did not start within 5 s")
	}
	return func() { cancel(); <-done }
}

// A flood of a thousand events, some blocks and a failover arrive as ONE email, over
// STARTTLS with authentication, to every recipient.
func TestGroupedAlertOverSTARTTLS(t *testing.T) {
	ms := startMailServer(t, "127.0.0.1:0")
	bus := events.New(100)
	dir := filepath.Join(t.TempDir(), "mailq")
	stop := startNotifier(t, testConfig(t, ms.Addr, ms.CAFile), dir, bus)
	defer stop()
	bus.Publish(events.Event{Kind: "wan.failover", Severity: events.Alert, Source: "wan", Message: "FTTC lost, now on LTE", Fields: map[string]string{"active": "LTE"}})
	for i := 0; i < 1000; i++ {
		bus.Publish(events.Event{Kind: "sipguard.flood", Severity: events.Warn, Source: "sipguard", Message: "INVITE flood", Fields: map[string]string{"addr": "192.0.2.66"}})
	}
	bus.Publish(events.Event{Kind: "sipguard.block", Severity: events.Alert, Source: "sipguard", Message: "192.0.2.66 blocked", Fields: map[string]string{"addr": "192.0.2.66", "reason": "INVITE flood"}})
	bus.Publish(events.Event{Kind: "uplink.probe", Source: "wan", Message: "routine, not mailed"})

	labtest.WaitFor(t, "the grouped email", 20*time.Second, func() bool { return len(ms.Mails()) > 0 })
	m := ms.Mails()[0]
	if !m.TLS || m.User != notifytest.User {
		t.Errorf("email sent with tls=%v as %q, want STARTTLS and AUTH", m.TLS, m.User)
	}
	if strings.Join(m.To, ",") != "it@example.net,boss@example.net" || m.From != "box@example.net" {
		t.Errorf("from %s to %v", m.From, m.To)
	}
	for _, want := range []string{"Subject: [Test Office] 1000× flood, 1× block, 1× failover"} {
		if !strings.Contains(m.Header, want) && !strings.Contains(decodeHeader(m.Header), want) {
			t.Errorf("header lacks %q:\n%s", want, decodeHeader(m.Header))
		}
	}
	for _, want := range []string{"1002 event(s)", "1000  flood", "FTTC lost, now on LTE", "reason=INVITE flood", "... and 990 more"} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("body lacks %q:\n%s", want, m.Body)
		}
	}
	if strings.Contains(m.Body, "routine") {
		t.Error("a routine event was mailed")
	}
	// The burst was one email, and the queue is empty once it is sent.
	labtest.WaitFor(t, "the queue to empty", 10*time.Second, func() bool {
		q, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		return len(q) == 0
	})
	if n := len(ms.Mails()); n != 1 {
		t.Errorf("%d emails for one burst, want 1", n)
	}
}

func decodeHeader(h string) string {
	var out []string
	for _, l := range strings.Split(h, "\r\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			if d, err := new(mime.WordDecoder).DecodeHeader(v); err == nil {
				v = d
			}
			l = k + ": " + v
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// While mail is unreachable the alert waits on disk, through a restart of the daemon, and
// goes out once the server answers.
func TestQueueSurvivesOutageAndRestart(t *testing.T) {
	// A port with nobody listening: the mail server is "down".
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	dir := filepath.Join(t.TempDir(), "mailq")
	ca := filepath.Join(t.TempDir(), "none.pem")
	cfg := testConfig(t, addr, ca)
	bus := events.New(100)
	failed, unsub := bus.Subscribe(100)
	defer unsub()
	stop := startNotifier(t, cfg, dir, bus)
	bus.Publish(events.Event{Kind: "trunk.down", Severity: events.Alert, Source: "sipguard", Message: "trunk acme unreachable", Fields: map[string]string{"trunk": "acme"}})
	labtest.WaitFor(t, "the failure to be reported", 20*time.Second, func() bool {
		for {
			select {
			case e := <-failed:
				if e.Kind == "notify.failed" {
					return true
				}
			default:
				return false
			}
		}
	})
	q, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(q) != 1 {
		t.Fatalf("queue holds %d messages, want 1", len(q))
	}
	stop() // the daemon restarts (or the box loses power: the queue file is already synced)
	// A message whose write the power cut short: its temporary file goes at the restart.
	torn := filepath.Join(dir, ".123-abc.json.tmp456")
	if err := os.WriteFile(torn, []byte(`{"id":"123-`), 0o600); err != nil {
		t.Fatal(err)
	}

	ms := startMailServer(t, addr)
	cfg.Notify.CAFile = ms.CAFile
	stop = startNotifier(t, cfg, dir, events.New(10))
	defer stop()
	labtest.WaitFor(t, "the queued email", 20*time.Second, func() bool { return len(ms.Mails()) == 1 })
	if m := ms.Mails()[0]; !strings.Contains(m.Body, "trunk acme unreachable") {
		t.Errorf("body:\n%s", m.Body)
	}
	labtest.WaitFor(t, "the queue to empty", 10*time.Second, func() bool {
		q, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		return len(q) == 0
	})
	if _, err := os.Stat(torn); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the torn write's temporary file is still in the queue (%v)", err)
	}
}

func TestCategory(t *testing.T) {
	for kind, want := range map[string]string{
		"sipguard.block": "block", "sipguard.unblock": "", "sipguard.flood": "flood",
		"sipguard.tollfraud": "toll fraud", "wan.failover": "failover", "uplink.failback": "failback",
		"trunk.down": "trunk down", "trunk.up": "trunk up", "config.changed": "config changed",
		"notify.failed": "", "uplink.probe": "", "backup.failed": "backup failed",
	} {
		if got := Category(events.Event{Kind: kind}); got != want {
			t.Errorf("Category(%s) = %q, want %q", kind, got, want)
		}
	}
}

// BenchmarkCompose10000 is the cost of turning a burst of 10 000 flood events into one email.
func BenchmarkCompose10000(b *testing.B) {
	evs := make([]events.Event, 10000)
	for i := range evs {
		evs[i] = events.Event{Time: time.Now(), Kind: "sipguard.flood", Message: "INVITE flood", Fields: map[string]string{"addr": "192.0.2.66"}}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := Compose(&config.Config{Site: "Office"}, evs)
		if m.Events != 10000 {
			b.Fatal(m.Events)
		}
	}
}

// A mail server that accepts the connection and then says nothing does not keep a send going
// after the notifier stops: the connection is closed when Run returns.
func TestStopDuringSilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	dir := filepath.Join(t.TempDir(), "mailq")
	cfg := testConfig(t, ln.Addr().String(), "")
	n := &Notifier{Config: func() *config.Config { return cfg }, Dir: dir, Bus: events.New(10)}
	if err := n.Enqueue(Message{Created: time.Now(), Subject: "s", Body: "b"}); err != nil {
		t.Fatal(err)
	}
	stop := startNotifier(t, cfg, dir, n.Bus)
	var c net.Conn
	select {
	case c = <-accepted:
	case <-time.After(20 * time.Second):
		t.Fatal("the notifier never connected to the mail server")
	}
	defer c.Close()
	stop()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("the notifier's connection is still open after it stopped (read: %v)", err)
	}
}
