package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/lab"
)

// Status is the part of the box's /api/status the scenarios read.
type Status struct {
	Version  string `json:"version"`
	Site     string `json:"site"`
	Firewall struct {
		Loaded bool   `json:"loaded"`
		Error  string `json:"error"`
	} `json:"firewall"`
	Active    string `json:"active_uplink"`
	Blocklist struct {
		Entries []struct {
			Addr    string   `json:"addr"`
			Sources []string `json:"sources"`
			Reason  string   `json:"reason"`
			Packets *uint64  `json:"packets_dropped"`
		} `json:"entries"`
	} `json:"blocklist"`
	SIPGuard *struct {
		Packets  uint64 `json:"packets"`
		SIP      uint64 `json:"sip"`
		Findings uint64 `json:"findings"`
		Blocks   uint64 `json:"blocks"`
	} `json:"sipguard"`
	TLS *struct {
		Fingerprint string `json:"fingerprint_sha256"`
	} `json:"tls"`
	Events []struct {
		Kind   string            `json:"kind"`
		Fields map[string]string `json:"fields"`
	} `json:"events"`
}

// client is an HTTP client whose connections start in host (a lab namespace). It trusts any
// certificate: the scenario compares the one served with the status page's itself.
func client(l *lab.Lab, host string) *http.Client {
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
				return l.DialTCP(host, addr, 10*time.Second)
			},
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			DisableKeepAlives: true,
		},
	}
}

// get reads url from host, at most 4 MiB of it.
func get(l *lab.Lab, host, url string) (*http.Response, []byte, error) {
	resp, err := client(l, host).Get(url)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp, body, err
}

// status reads the box's status page from the phone (the LAN), over plain HTTP as
// monitoring does.
func status(l *lab.Lab) (Status, error) {
	var s Status
	resp, body, err := get(l, lab.HostPhone, "http://"+lab.BoxLAN4+"/api/status")
	if err != nil {
		return s, err
	}
	if resp.StatusCode != 200 {
		return s, fmt.Errorf("status page: HTTP %d: %.200s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("status page: %w", err)
	}
	return s, nil
}

// waitStatus polls the status page until ok holds or d passes, and returns the last status
// read (or the last error, in the returned message).
func (r *runner) waitStatus(d time.Duration, ok func(Status) bool) (Status, bool, string) {
	var last Status
	lastErr := "no answer"
	deadline := time.Now().Add(d)
	for {
		s, err := status(r.l)
		if err == nil {
			last, lastErr = s, ""
			if ok(s) {
				return s, true, ""
			}
		} else {
			lastErr = err.Error()
		}
		if r.vm.Exited() || time.Now().After(deadline) || r.ctx.Err() != nil {
			return last, false, lastErr
		}
		time.Sleep(time.Second)
	}
}

// blocked says whether the status's blocklist holds addr, blocked by sipguard.
func (s Status) blocked(addr string) (bool, *uint64) {
	for _, e := range s.Blocklist.Entries {
		if e.Addr == addr || strings.TrimSuffix(e.Addr, "/32") == addr {
			for _, src := range e.Sources {
				if src == "sipguard" {
					return true, e.Packets
				}
			}
		}
	}
	return false, nil
}

// guard is sipguard's totals, for a failure's message.
func (s Status) guard() string {
	if s.SIPGuard == nil {
		return "off"
	}
	return fmt.Sprintf("saw %d packets, %d SIP, %d findings, %d blocks", s.SIPGuard.Packets, s.SIPGuard.SIP, s.SIPGuard.Findings, s.SIPGuard.Blocks)
}

// entries lists the blocklist's entries, for a failure's message.
func (s Status) entries() string {
	var out []string
	for _, e := range s.Blocklist.Entries {
		out = append(out, e.Addr+" by "+strings.Join(e.Sources, "+"))
	}
	if len(out) == 0 {
		return "empty"
	}
	return strings.Join(out, ", ")
}

// kernelMissing lists the features the daemon found missing in the VM's kernel.
func (s Status) kernelMissing() []string {
	var out []string
	for _, e := range s.Events {
		if e.Kind == "kernel.missing" {
			out = append(out, e.Fields["feature"])
		}
	}
	return out
}
