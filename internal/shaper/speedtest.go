package shaper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/bind"
)

// SpeedResult is a line's measured rates.
type SpeedResult struct {
	Uplink    string        `json:"uplink"`
	Interface string        `json:"interface"`
	Server    string        `json:"server"`
	Download  float64       `json:"download_bps"`
	Upload    float64       `json:"upload_bps"`
	Duration  time.Duration `json:"duration_ns"` // of each direction
}

// SpeedOptions say where and how to measure.
type SpeedOptions struct {
	Uplink, Interface string
	Source            netip.Addr // the uplink's address (invalid: the kernel picks one)
	URL               string     // GET: a large body; POST: takes a stream of bytes
	Duration          time.Duration
	// Dial makes the connections (nil: a socket bound to Interface and Source); tests dial
	// from a namespace.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// SpeedDialer dials through iface from src. The socket's priority is the shaper's root
// handle, which HTB sends straight out (htb_classify: skb->priority == the qdisc's handle):
// the test measures the line, not the shaper in front of it.
func SpeedDialer(iface string, src netip.Addr) *net.Dialer {
	d := &net.Dialer{Timeout: 10 * time.Second, Control: func(network, address string, c syscall.RawConn) error {
		if err := bind.Device(iface)(network, address, c); err != nil {
			return err
		}
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PRIORITY, rootHandle) })
		return errors.Join(err, serr)
	}}
	if src.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	return d
}

// Speedtest measures o.URL's download, then its upload, through one uplink, each for
// o.Duration; ctx bounds the whole.
func Speedtest(ctx context.Context, o SpeedOptions) (SpeedResult, error) {
	if o.URL == "" {
		return SpeedResult{}, errors.New("speedtest: no server: set [voice] speedtest_url")
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	dial := o.Dial
	if dial == nil {
		dial = SpeedDialer(o.Interface, o.Source).DialContext
	}
	// No proxy, no connection reuse across directions: each measures one TCP connection
	// of its own from a cold start, as iperf3 does.
	hc := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true, ResponseHeaderTimeout: 10 * time.Second}}
	r := SpeedResult{Uplink: o.Uplink, Interface: o.Interface, Server: o.URL, Duration: o.Duration}
	var err error
	if r.Download, err = download(ctx, hc, o.URL, o.Duration); err != nil {
		return r, fmt.Errorf("speedtest: download from %s: %w", o.URL, err)
	}
	if r.Upload, err = upload(ctx, hc, o.URL, o.Duration); err != nil {
		return r, fmt.Errorf("speedtest: upload to %s: %w", o.URL, err)
	}
	return r, nil
}

// download reads the body for d and returns bit/s.
func download(ctx context.Context, hc *http.Client, url string, d time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("the server answered %s", resp.Status)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil && ctx.Err() == nil {
		return 0, err
	}
	return rate(n, time.Since(start)), nil
}

// upload sends zeros for d and returns bit/s.
func upload(ctx context.Context, hc *http.Client, url string, d time.Duration) (float64, error) {
	body := &timedZeros{until: time.Now().Add(d)}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		return 0, err
	}
	req.ContentLength = -1
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	ans, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("the server answered %s", resp.Status)
	}
	// What the server read, by the time it answered: the bytes written include what still
	// sat in the socket's buffer when the body ended.
	n, err := strconv.ParseInt(strings.TrimSpace(string(ans)), 10, 64)
	if err != nil || n < 0 || n > body.n.Load() {
		n = body.n.Load()
	}
	return rate(n, took), nil
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) * 8 / d.Seconds()
}

// timedZeros is a request body of zeros that ends at until.
type timedZeros struct {
	until time.Time
	n     atomic.Int64
}

func (z *timedZeros) Read(p []byte) (int, error) {
	if time.Now().After(z.until) {
		return 0, io.EOF
	}
	clear(p)
	z.n.Add(int64(len(p)))
	return len(p), nil
}
