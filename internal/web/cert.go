package web

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/store"
	"github.com/officeedge/appliance/internal/version"
)

// CertFile is the box's own HTTPS certificate and its key, in the state directory. Both are
// in one PEM file: written at once, a power cut leaves the old pair or the new one, never a
// certificate with another certificate's key.
const CertFile = "web-tls.pem"

// certLife is how long a certificate the box makes is valid; certRenew is how long before
// its end the box makes a new one. 825 days is the longest some browsers accept at all.
const (
	certLife  = 825 * 24 * time.Hour
	certRenew = 30 * 24 * time.Hour
)

// CertInfo is the certificate served over HTTPS, as the page shows it.
type CertInfo struct {
	Fingerprint string    `json:"fingerprint_sha256"` // of the certificate (DER), as browsers and openssl show it
	Names       []string  `json:"names"`              // its addresses and host names
	NotAfter    time.Time `json:"not_after"`
	SelfSigned  bool      `json:"self_signed"`     // made by the box (not [web] cert_file)
	Error       string    `json:"error,omitempty"` // why the wanted certificate is not the one served
}

// Certs holds the certificate the page serves over HTTPS, made again when the box's
// addresses or names change. It is safe for concurrent use.
type Certs struct {
	stateDir string
	now      func() time.Time
	mu       sync.Mutex // one Ensure at a time
	cur      atomic.Pointer[servedCert]
}

type servedCert struct {
	cert *tls.Certificate
	info CertInfo
	want string // what it was made or loaded for: the names, or the files
}

// NewCerts keeps the box's certificate in stateDir; call Ensure before serving.
func NewCerts(stateDir string) *Certs {
	return &Certs{stateDir: stateDir, now: time.Now}
}

// CertFingerprint is the SHA-256 fingerprint of the certificate the box made for its status
// page in stateDir ("AB:CD:…", as browsers and `openssl x509 -fingerprint -sha256` show it),
// for the command line to print. It reads the file only: it needs no running daemon.
// A certificate of [web] cert_file has its own fingerprint: see FileFingerprint.
func CertFingerprint(stateDir string) (string, error) {
	return FileFingerprint(filepath.Join(stateDir, CertFile))
}

// FileFingerprint is the SHA-256 fingerprint of the first certificate in a PEM file.
func FileFingerprint(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("web: read the HTTPS certificate: %w", err)
	}
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return "", fmt.Errorf("web: %s holds no certificate", path)
		}
		if blk.Type == "CERTIFICATE" {
			return Fingerprint(blk.Bytes), nil
		}
	}
}

// Fingerprint is the SHA-256 fingerprint of a DER certificate, in upper-case hex pairs.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	pairs := make([]string, 0, len(sum))
	for i := 0; i < len(h); i += 2 {
		pairs = append(pairs, h[i:i+2])
	}
	return strings.Join(pairs, ":")
}

// CertNames are what the box's own certificate names: its LAN addresses, its uplinks'
// static addresses, [web] listen and [web] hostnames.
func CertNames(c *config.Config) (ips []netip.Addr, dns []string) {
	add := func(a netip.Addr) {
		if a = a.Unmap(); a.IsValid() && !slices.Contains(ips, a) {
			ips = append(ips, a)
		}
	}
	for _, a := range c.LAN.Addresses {
		add(a.Addr())
	}
	for _, u := range c.Uplink.All() {
		if u.Mode == "static" {
			add(u.Address.Addr())
			add(u.Address6.Addr())
		}
	}
	for _, a := range c.Web.Listen {
		add(a.Addr)
	}
	for _, h := range c.Web.Hostnames {
		if h = strings.ToLower(strings.TrimSuffix(h, ".")); h != "" && !slices.Contains(dns, h) {
			dns = append(dns, h)
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	slices.Sort(dns)
	return ips, dns
}

// Ensure makes the served certificate fit cfg: [web] cert_file and key_file when set, else
// the box's own, reused from the state directory while it names the box's addresses and
// names and is not near its end, made again otherwise. An error says what could not be done;
// a certificate is served even then (the box's own, kept in memory if it cannot be saved),
// so that the page stays reachable.
func (c *Certs) Ensure(cfg *config.Config) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := cfg.Web
	if w.CertFile != "" {
		err := c.loadFiles(w.CertFile, w.KeyFile)
		if err == nil {
			return nil
		}
		return errors.Join(err, c.ensureOwn(cfg, err.Error()))
	}
	return c.ensureOwn(cfg, "")
}

// loadFiles serves the configured certificate and key.
func (c *Certs) loadFiles(certFile, keyFile string) error {
	want := "files " + certFile + " " + keyFile
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("web: load [web] cert_file and key_file: %w", err)
	}
	c.cur.Store(&servedCert{cert: &cert, info: certInfo(cert.Leaf, false, ""), want: want})
	return nil
}

// ensureOwn serves the box's own certificate for cfg's names; problem is why it is served
// instead of the configured one ("" when none is configured).
func (c *Certs) ensureOwn(cfg *config.Config, problem string) error {
	ips, dns := CertNames(cfg)
	want := namesKey(ips, dns)
	now := c.now()
	if cur := c.cur.Load(); cur != nil && cur.want == want && fresh(cur.cert.Leaf, now) {
		c.setProblem(cur, problem)
		return nil
	}
	path := filepath.Join(c.stateDir, CertFile)
	if cert, err := readOwn(path); err == nil && ownKey(cert.Leaf) == want && fresh(cert.Leaf, now) {
		c.cur.Store(&servedCert{cert: cert, info: certInfo(cert.Leaf, true, problem), want: want})
		return nil
	}
	cert, file, err := makeCert(ips, dns, now)
	if err != nil {
		return err
	}
	werr := saveOwn(c.stateDir, path, file)
	if werr != nil {
		problem = strings.TrimPrefix(problem+"; ", "; ") + werr.Error() + " (a new certificate is made at each start until it can be saved)"
	}
	c.cur.Store(&servedCert{cert: cert, info: certInfo(cert.Leaf, true, problem), want: want})
	return werr
}

// setProblem updates why the served certificate is not the configured one, if that changed.
func (c *Certs) setProblem(cur *servedCert, problem string) {
	if cur.info.Error == problem {
		return
	}
	next := *cur
	next.info.Error = problem
	c.cur.Store(&next)
}

// fresh says whether a certificate is valid now and for longer than certRenew.
func fresh(leaf *x509.Certificate, now time.Time) bool {
	return leaf != nil && !now.Before(leaf.NotBefore) && now.Add(certRenew).Before(leaf.NotAfter)
}

// namesKey identifies a set of certificate names, to see whether a certificate covers the box.
func namesKey(ips []netip.Addr, dns []string) string {
	var parts []string
	for _, a := range ips {
		parts = append(parts, a.String())
	}
	return strings.Join(append(parts, dns...), " ")
}

// ownKey is the namesKey of what a certificate names.
func ownKey(leaf *x509.Certificate) string {
	var ips []netip.Addr
	for _, ip := range leaf.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			ips = append(ips, a.Unmap())
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	dns := slices.Clone(leaf.DNSNames)
	slices.Sort(dns)
	return namesKey(ips, dns)
}

// readOwn loads the box's own certificate and key from their file.
func readOwn(path string) (*tls.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("web: read the HTTPS certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(b, b)
	if err != nil {
		return nil, fmt.Errorf("web: %s: %w", path, err)
	}
	return &cert, nil
}

// saveOwn writes the certificate file crash-safe, readable by root only (it holds the key).
func saveOwn(stateDir, path string, file []byte) error {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("web: save the HTTPS certificate: %w", err)
	}
	if err := store.WriteFile(path, file, 0o600); err != nil {
		return fmt.Errorf("web: save the HTTPS certificate: %w", err)
	}
	return nil
}

// makeCert makes a self-signed ECDSA P-256 certificate for the names, and its PEM file
// (certificate, then key).
func makeCert(ips []netip.Addr, dns []string, now time.Time) (*tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("web: make the HTTPS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("web: make the HTTPS certificate's serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName(ips, dns), Organization: []string{"office edge appliance"}},
		NotBefore:             now.Add(-time.Hour), // a clock a little behind still accepts it
		NotAfter:              notAfter(now),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:              dns,
		BasicConstraintsValid: true,
	}
	for _, a := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(a.AsSlice()))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("web: make the HTTPS certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("web: encode the HTTPS key: %w", err)
	}
	file := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})...)
	cert, err := tls.X509KeyPair(file, file)
	if err != nil {
		return nil, nil, fmt.Errorf("web: the HTTPS certificate just made: %w", err)
	}
	return &cert, file, nil
}

// commonName is the certificate's subject: its first host name, else its first address.
func commonName(ips []netip.Addr, dns []string) string {
	if len(dns) > 0 {
		return dns[0]
	}
	if len(ips) > 0 {
		return ips[0].String()
	}
	return "office edge appliance"
}

// certInfo describes a certificate for the page.
func certInfo(leaf *x509.Certificate, self bool, problem string) CertInfo {
	ci := CertInfo{Fingerprint: Fingerprint(leaf.Raw), NotAfter: leaf.NotAfter, SelfSigned: self, Error: problem, Names: []string{}}
	for _, ip := range leaf.IPAddresses {
		ci.Names = append(ci.Names, ip.String())
	}
	ci.Names = append(ci.Names, leaf.DNSNames...)
	return ci
}

// Info is the certificate served now; false before the first Ensure.
func (c *Certs) Info() (CertInfo, bool) {
	cur := c.cur.Load()
	if cur == nil {
		return CertInfo{}, false
	}
	return cur.info, true
}

// TLSConfig serves the current certificate: one made again after a reload is used by the
// next connection without listening again.
func (c *Certs) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			cur := c.cur.Load()
			if cur == nil {
				return nil, errors.New("web: no HTTPS certificate yet")
			}
			return cur.cert, nil
		},
	}
}

// PinnedTLS is a client TLS configuration that accepts only the certificate with this
// SHA-256 fingerprint (as CertFingerprint gives it), for scripts and tests that talk to the
// box: its certificate is self-signed, so the fingerprint stands for a chain to a CA.
func PinnedTLS(fingerprint string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // no chain to verify: VerifyConnection checks the pin instead
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("web: the server sent no certificate")
			}
			if got := Fingerprint(cs.PeerCertificates[0].Raw); !strings.EqualFold(got, fingerprint) {
				return fmt.Errorf("web: the server's certificate is %s, not the pinned %s", got, fingerprint)
			}
			return nil
		},
	}
}

// notAfter is a new certificate's end: certLife from now, or from the clock floor when the
// clock is wrong (a box's first start before it reached a time server), so the certificate
// made then, and its pinned fingerprint, stay good once the clock is right.
func notAfter(now time.Time) time.Time {
	if f := version.ClockFloor(); now.Before(f) {
		return f.Add(certLife)
	}
	return now.Add(certLife)
}
