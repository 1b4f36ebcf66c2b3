// Package notifytest runs a real SMTP server (emersion/go-smtp) for tests: STARTTLS with a certificate made on the spot, AUTH PLAIN only after it.
package notifytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"mime/quotedprintable"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Credentials the server accepts.
const (
	User     = "alerts@example.net"
	Password = "s3cret"
)

// Mail is one email as the server got it.
type Mail struct {
	From   string
	To     []string
	User   string // who logged in
	TLS    bool   // sent after STARTTLS
	Header string
	Body   string // quoted-printable decoded
}

// Server is a running test SMTP server.
type Server struct {
	Addr   string // host:port it listens on
	CAFile string // PEM of its certificate, for the client's ca_file
	srv    *smtp.Server
	mu     sync.Mutex
	mails  []Mail
}

type session struct {
	s    *Server
	conn *smtp.Conn
	cur  Mail
}

func (x *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (x *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != User || pass != Password {
			return errors.New("bad credentials")
		}
		x.cur.User = user
		return nil
	}), nil
}
func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	if x.cur.User == "" {
		return errors.New("log in first")
	}
	x.cur.From = from
	return nil
}
func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.cur.To = append(x.cur.To, to)
	return nil
}
func (x *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, x.cur.TLS = x.conn.TLSConnectionState()
	h, body, _ := strings.Cut(string(b), "\r\n\r\n")
	dec, _ := io.ReadAll(quotedprintable.NewReader(strings.NewReader(body)))
	x.cur.Header, x.cur.Body = h, string(dec)
	x.s.mu.Lock()
	x.s.mails = append(x.s.mails, x.cur)
	x.s.mu.Unlock()
	x.cur = Mail{User: x.cur.User}
	return nil
}
func (x *session) Reset()        {}
func (x *session) Logout() error { return nil }

// Serve runs a server on ln, with a certificate for ip, until the test ends.
func Serve(t testing.TB, ln net.Listener, ip net.IP) *Server {
	t.Helper()
	certPEM, keyPEM := cert(t, ip)
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: ln.Addr().String(), CAFile: filepath.Join(t.TempDir(), "smtp-ca.pem")}
	if err := os.WriteFile(s.CAFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{s: s, conn: c}, nil }))
	s.srv.Domain = ip.String()
	s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{c}}
	s.srv.AllowInsecureAuth = false // AUTH only after STARTTLS
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// Mails returns the emails received so far.
func (s *Server) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// cert makes a self-signed certificate for ip.
func cert(t testing.TB, ip net.IP) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test mail server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{ip}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
