// Package lapitest runs Debian's real CrowdSec Local API (`crowdsec -no-cs`) for tests and
// benchmarks: its own config, SQLite database and TLS certificate, no hub, no internet.
package lapitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// LAPI is one running Local API.
type LAPI struct {
	Dir    string // its config, database and certificate
	URL    string // https://ADDR:PORT
	CAFile string // the certificate it serves (self-signed: its own CA)
	Pin    string // the certificate's SHA-256, hex
	// ClientCert and ClientKey are a client certificate the LAPI takes (RequireClientCert).
	ClientCert, ClientKey string
	ns                    string // network namespace it runs in; "" for the current one
	cmd                   *exec.Cmd
	log                   *os.File
}

// Option changes the LAPI's config.
type Option func(*settings)

type settings struct{ clientCA bool }

// RequireClientCert makes the LAPI refuse TLS clients without a certificate of its own CA.
func RequireClientCert() Option { return func(s *settings) { s.clientCA = true } }

// Start writes a config for a LAPI listening on listen (ADDR:PORT) and starts it, in network
// namespace ns ("" for the current one), waiting until it answers.
func Start(dir, ns, listen string, opts ...Option) (*LAPI, error) {
	var set settings
	for _, o := range opts {
		o(&set)
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("lapitest: listen %q: %w", listen, err)
	}
	l := &LAPI{Dir: dir, URL: "https://" + listen, CAFile: filepath.Join(dir, "cert.pem"), ns: ns}
	for _, d := range []string{"data", "hub", "notifications"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	if l.Pin, err = writeCert(dir, host); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(configYAML, dir, listen)
	if set.clientCA {
		if err := l.clientCA(); err != nil {
			return nil, err
		}
		cfg = strings.Replace(cfg, "      key_file: "+dir+"/key.pem\n", "      key_file: "+dir+"/key.pem\n"+
			"      client_verification: RequireAndVerifyClientCert\n      ca_cert_path: "+dir+"/client-ca.pem\n"+
			"      bouncers_allowed_ou: [bouncer-ou]\n      agents_allowed_ou: [agent-ou]\n", 1)
	}
	files := map[string]string{
		"config.yaml":     cfg,
		"profiles.yaml":   profilesYAML,
		"simulation.yaml": "simulation: off\n",
		"acquis.yaml":     "",
		"hub/.index.json": "{}",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			return nil, err
		}
	}
	// cscli's own login, for `decisions add`.
	if set.clientCA {
		creds := fmt.Sprintf("url: %s\nca_cert_path: %s/cert.pem\ncert_path: %[2]s/cscli.pem\nkey_path: %[2]s/cscli.key\n", l.URL, dir)
		if err := os.WriteFile(filepath.Join(dir, "local_api_credentials.yaml"), []byte(creds), 0o600); err != nil {
			return nil, err
		}
	} else if _, err := l.CLI("machines", "add", "cscli", "--password", "cscli-test-password", "-f", filepath.Join(dir, "local_api_credentials.yaml"), "--url", l.URL); err != nil {
		return nil, err
	}
	return l, l.Restart()
}

// Restart starts the LAPI (again) and waits until it answers.
func (l *LAPI) Restart() error {
	from := len(l.Log())
	var err error
	if l.log, err = os.OpenFile(filepath.Join(l.Dir, "lapi.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return err
	}
	l.cmd = l.command("crowdsec", "-c", filepath.Join(l.Dir, "config.yaml"), "-no-cs")
	l.cmd.Stdout, l.cmd.Stderr = l.log, l.log
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := l.cmd.Start(); err != nil {
		return fmt.Errorf("lapitest: start crowdsec: %w", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(l.Log()[from:], "CrowdSec Local API listening") {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.Stop()
	return fmt.Errorf("lapitest: the LAPI did not start in 20s: %s", tail(l.Log()))
}

// Stop ends the LAPI (its database stays for a Restart).
func (l *LAPI) Stop() {
	if l.cmd == nil || l.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-l.cmd.Process.Pid, syscall.SIGKILL)
	_ = l.cmd.Wait()
	l.cmd = nil
	l.log.Close()
}

// Log is the LAPI's output so far.
func (l *LAPI) Log() string {
	b, _ := os.ReadFile(filepath.Join(l.Dir, "lapi.log"))
	return string(b)
}

// CLI runs cscli on the LAPI's config.
func (l *LAPI) CLI(args ...string) (string, error) {
	cmd := l.command("cscli", append([]string{"-c", filepath.Join(l.Dir, "config.yaml")}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lapitest: cscli %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// AddMachine registers a machine and writes its password to a 0600 file.
func (l *LAPI) AddMachine(id, passwordFile string) error {
	pw := "pw-" + id + "-0123456789"
	if _, err := l.CLI("machines", "add", id, "--password", pw, "-f", "/dev/null"); err != nil {
		return err
	}
	return os.WriteFile(passwordFile, []byte(pw+"\n"), 0o600)
}

// AddBouncer registers a bouncer and writes its key to a 0600 file.
func (l *LAPI) AddBouncer(name, keyFile string) error {
	key := "key-" + name + "-0123456789abcdef"
	if _, err := l.CLI("bouncers", "add", name, "-k", key); err != nil {
		return err
	}
	return os.WriteFile(keyFile, []byte(key+"\n"), 0o600)
}

// Decide adds a ban on an address or range for d.
func (l *LAPI) Decide(p netip.Prefix, d time.Duration) error {
	what := []string{"--range", p.String()}
	if p.IsSingleIP() {
		what = []string{"--ip", p.Addr().String()}
	}
	_, err := l.CLI(append(append([]string{"decisions", "add"}, what...), "--duration", d.String(), "--reason", "lapitest")...)
	return err
}

// Delete removes the decisions on an address.
func (l *LAPI) Delete(a netip.Addr) error {
	_, err := l.CLI("decisions", "delete", "--ip", a.String())
	return err
}

// Decisions lists the values with a decision in force, with their scenarios.
func (l *LAPI) Decisions() (map[string]string, error) {
	out, err := l.CLI("decisions", "list", "-o", "json")
	if err != nil {
		return nil, err
	}
	var alerts []struct {
		Decisions []struct {
			Value    string `json:"value"`
			Scenario string `json:"scenario"`
		} `json:"decisions"`
	}
	if strings.TrimSpace(out) == "null" || strings.TrimSpace(out) == "" {
		return map[string]string{}, nil
	}
	if err := json.Unmarshal([]byte(out), &alerts); err != nil {
		return nil, fmt.Errorf("lapitest: decisions list: %w: %s", err, tail(out))
	}
	m := map[string]string{}
	for _, a := range alerts {
		for _, d := range a.Decisions {
			m[d.Value] = d.Scenario
		}
	}
	return m, nil
}

func (l *LAPI) command(name string, args ...string) *exec.Cmd {
	if l.ns == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", l.ns, name}, args...)...)
}

// clientCA makes a CA for client certificates and one certificate signed by it.
func (l *LAPI) clientCA() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "lapitest client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	issue := func(name, ou string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		cl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name, OrganizationalUnit: []string{ou}},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, cl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(l.Dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(l.Dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	}
	if err := os.WriteFile(filepath.Join(l.Dir, "client-ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		return err
	}
	l.ClientCert, l.ClientKey = filepath.Join(l.Dir, "box.pem"), filepath.Join(l.Dir, "box.key")
	if err := issue("box", "bouncer-ou"); err != nil {
		return err
	}
	return issue("cscli", "agent-ou") // cscli's own login, by certificate
}

// writeCert makes a self-signed certificate for host and returns its SHA-256.
func writeCert(dir, host string) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lapitest"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if a, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = []net.IP{a.AsSlice()}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

func tail(s string) string {
	if len(s) > 1500 {
		return "…" + s[len(s)-1500:]
	}
	return s
}

const configYAML = `common:
  daemonize: false
  log_media: stdout
  log_level: info
  working_dir: %[1]s
config_paths:
  config_dir: %[1]s/
  data_dir: %[1]s/data/
  simulation_path: %[1]s/simulation.yaml
  hub_dir: %[1]s/hub/
  index_path: %[1]s/hub/.index.json
  notification_dir: %[1]s/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
crowdsec_service:
  acquisition_path: %[1]s/acquis.yaml
cscli:
  output: human
db_config:
  type: sqlite
  db_path: %[1]s/data/crowdsec.db
  use_wal: false
api:
  client:
    insecure_skip_verify: true
    credentials_path: %[1]s/local_api_credentials.yaml
  server:
    log_level: info
    listen_uri: %[2]s
    profiles_path: %[1]s/profiles.yaml
    trusted_ips: ["127.0.0.1", "::1"]
    tls:
      cert_file: %[1]s/cert.pem
      key_file: %[1]s/key.pem
prometheus:
  enabled: false
`

// The packaged default profile: an alert without decisions of its own gets a 4 h ban.
const profilesYAML = `name: default_ip_remediation
filters:
 - Alert.Remediation == true && Alert.GetScope() == "Ip"
decisions:
 - type: ban
   duration: 4h
on_success: break
`
