// Package offsite stores encrypted backup copies off-site: S3-compatible storage and SFTP servers.
package offsite

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/officeedge/appliance/internal/bind"
	"github.com/officeedge/appliance/internal/config"
)

// Object is one stored copy.
type Object struct {
	Name string
	Size int64
}

// Store is one destination. Put makes an object visible under its name only once it is
// whole, so an upload cut short never looks like a copy.
type Store interface {
	Put(ctx context.Context, name string, r io.Reader) error
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	Delete(ctx context.Context, name string) error
	List(ctx context.Context) ([]Object, error)
	Close() error
}

// DialFunc dials a destination.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Open connects to the destination d.
func Open(ctx context.Context, d config.BackupDest, dial DialFunc) (Store, error) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	switch d.Kind {
	case "s3":
		return openS3(ctx, d, dial)
	case "sftp":
		return openSFTP(ctx, d, dial)
	}
	return nil, fmt.Errorf("offsite: %s: unknown kind %q", d.Name, d.Kind)
}

// BindDialer dials through the interface iface only (SO_BINDTODEVICE), whatever the
// default route is: a backup upload must not wander onto the metered backup uplink.
func BindDialer(iface string) DialFunc {
	d := &net.Dialer{Control: bind.Device(iface)}
	return d.DialContext
}

// SSHClientConfig is the client side of an SSH login to a backup server: the box's key
// from keyFile and the server's pinned host key (an OpenSSH public key line).
func SSHClientConfig(user, keyFile, hostKey string) (*ssh.ClientConfig, error) {
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", keyFile, err)
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hostKey))
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	return &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hk), HostKeyAlgorithms: []string{hk.Type()}}, nil
}

// DialSSH logs in to addr over a connection from dial.
func DialSSH(ctx context.Context, dial DialFunc, addr string, cc *ssh.ClientConfig) (*ssh.Client, error) {
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cc)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// join makes an object key from a prefix and a name.
func join(prefix, name string) string {
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		return name
	}
	return prefix + "/" + name
}
