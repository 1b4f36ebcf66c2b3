// Package kernelfeat finds out which kernel features the appliance relies on are present.
package kernelfeat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Feature is one kernel feature and what the appliance loses without it.
type Feature struct {
	Name        string `json:"name"`
	OK          bool   `json:"ok"`
	Consequence string `json:"consequence,omitempty"` // what is lost when !OK, one line
	Detail      string `json:"detail,omitempty"`      // how the probe failed
}

// probeTable is created and deleted again at once to find which nftables expressions the
// kernel takes; its chain has no hook, so no packet ever passes through it.
const probeTable = "appliance_kernelfeat_probe"

// Detect probes the running kernel (in the caller's network namespace). It needs
// CAP_NET_ADMIN, like the daemon; it changes nothing that outlives the call.
func Detect() []Feature {
	var fs []Feature
	add := func(name, consequence string, err error) {
		f := Feature{Name: name, OK: err == nil}
		if err != nil {
			f.Consequence, f.Detail = consequence, err.Error()
		}
		fs = append(fs, f)
	}
	nftErr := probeNftables()
	add("nf_tables", "no nf_tables: the firewall cannot be loaded at all", nftErr)
	if nftErr == nil {
		for i, err := range probeAllExprs() {
			add(nftProbes[i].name, nftProbes[i].consequence, err)
		}
	}
	add("conntrack netlink", "no conntrack netlink: stale SIP flows are not flushed on failover, and a blocked attacker's open flows live on until they time out",
		probeNfnl(nfnlSubsysCtnetlink, ipctnlMsgCtGetStats, 0, true))
	add("NFLOG", "no NFLOG (nfnetlink_log): packets cannot be logged to user space (sipguard is unaffected: it reads SIP with a packet socket)",
		probeNfnl(nfnlSubsysULOG, nfulnlMsgConfig, probeGroup, false))
	add("NFQUEUE", "no NFQUEUE (nfnetlink_queue): packets cannot be held for a user-space verdict (nothing in this build needs it)",
		probeNfnl(nfnlSubsysQueue, nfqnlMsgConfig, probeGroup, false))
	add("policy routing", "no policy routing (IP_MULTIPLE_TABLES): no per-uplink routing tables, so replies to connections that came in on the standby uplink leave through the active one (failover itself works: both default routes stay in the main table by metric)",
		probeRules(unix.AF_INET))
	add("packet sockets", "no packet sockets (AF_PACKET): sipguard cannot see SIP traffic and detects no attacks",
		probePacket())
	add("wireguard", "no kernel WireGuard: the VPN ([vpn]) runs on the user-space implementation (wireguard-go on TUN), which works but costs more CPU",
		probeWireGuard())
	qerrs, ifbErr := probeAllQdiscs() // qdisc.go: the shaper's
	for i, err := range qerrs {
		add(qdiscProbes[i].name, qdiscProbes[i].consequence, err)
	}
	add("ifb", "no ifb interfaces: the download cannot be shaped (only the upload)", ifbErr)
	return fs
}

// Has says whether the feature named name was found (false when it was not probed).
func Has(fs []Feature, name string) bool {
	for _, f := range fs {
		if f.Name == name {
			return f.OK
		}
	}
	return false
}

// Missing returns the features that are not there.
func Missing(fs []Feature) []Feature {
	var m []Feature
	for _, f := range fs {
		if !f.OK {
			m = append(m, f)
		}
	}
	return m
}

type nftProbe struct {
	name, consequence string
	exprs             func(set *nftables.Set) []expr.Any
}

// nftProbes are the nftables features the firewall (netcfg) and its users rely on.
var nftProbes = []nftProbe{
	{"nft ct", "no conntrack matching in nftables (NFT_CT): the firewall cannot be loaded (it is stateful)", func(*nftables.Set) []expr.Any {
		return []expr.Any{&expr.Ct{Register: 1, Key: expr.CtKeySTATE}, &expr.Counter{}}
	}},
	{"nft limit", "no rate limits in nftables (NFT_LIMIT): the firewall cannot be loaded (it rate-limits ping)", func(*nftables.Set) []expr.Any {
		return []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: 10, Unit: expr.LimitTimeSecond, Burst: 20}}
	}},
	{"nft dynamic sets", "no dynamic sets with timeouts in nftables: timed blocks cannot be loaded", func(set *nftables.Set) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Dynset{SrcRegKey: 1, SetName: set.Name, Operation: uint32(unix.NFT_DYNSET_OP_UPDATE), Timeout: time.Minute},
		}
	}},
	{"nft nat", "no NAT in nftables (NFT_NAT/NFT_MASQ): the office cannot reach the internet and nothing is forwarded to the PBX", func(*nftables.Set) []expr.Any {
		return []expr.Any{
			&expr.Immediate{Register: 1, Data: []byte{192, 0, 2, 1}},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
			&expr.Masq{},
		}
	}},
	{"ct mark", "no conntrack marks (NF_CONNTRACK_MARK; the gokrazy kernels lack it): replies to connections that came in on the standby uplink leave through the active one", func(*nftables.Set) []expr.Any {
		return []expr.Any{
			&expr.Immediate{Register: 1, Data: []byte{0, 1, 0, 0}},
			&expr.Ct{Register: 1, Key: expr.CtKeyMARK, SourceRegister: true},
		}
	}},
	{"nft log", "no logging in nftables (NFT_LOG or its backend nf_log_syslog): firewall drops cannot be logged", func(*nftables.Set) []expr.Any {
		return []expr.Any{&expr.Log{}}
	}},
	{"nft queue", "no queueing in nftables (NFT_QUEUE): rules cannot hand packets to user space (nothing in this build needs it)", func(*nftables.Set) []expr.Any {
		return []expr.Any{&expr.Queue{Num: probeGroup, Flag: expr.QueueFlagBypass}}
	}},
}

func probeNftables() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	_, err = c.ListTablesOfFamily(nftables.TableFamilyINet)
	return err
}

// probeExprs loads one rule made of the probe's expressions into a throw-away table.
func probeExprs(exprs func(*nftables.Set) []expr.Any) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: probeTable, Family: nftables.TableFamilyINet}
	// A table left by a probe that died half-way goes first (deleting an absent one fails).
	c.DelTable(t)
	_ = c.Flush()
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{Name: "probe", Table: t})
	set := &nftables.Set{Table: t, Name: "probe", KeyType: nftables.TypeIPAddr, Dynamic: true, HasTimeout: true}
	if err := c.AddSet(set, nil); err != nil {
		return err
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs(set)})
	probeErr := c.Flush()
	c.DelTable(t)
	if err := c.Flush(); err != nil && probeErr == nil {
		return fmt.Errorf("remove probe table: %w", err)
	}
	return probeErr
}

func probeRules(family int) error {
	_, err := netlink.RuleList(family)
	return err
}

func probePacket() error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	return unix.Close(fd)
}

// nfnetlink subsystems and message types (linux/netfilter/nfnetlink*.h).
const (
	nfnlSubsysCtnetlink = 1
	nfnlSubsysQueue     = 3
	nfnlSubsysULOG      = 4
	ipctnlMsgCtGetStats = 5
	nfqnlMsgConfig      = 2
	nfulnlMsgConfig     = 1
	// probeGroup is a queue/log group number nobody uses: the probe must not touch a real one.
	probeGroup = 65531
)

// probeNfnl sends one nfnetlink message to a subsystem. The kernel answers EINVAL when the
// subsystem is absent (after trying to load its module); a config message without a command
// for an unbound group gets ENODEV (EPERM if another process owns it) from a present one.
// Hand-written on raw netlink because it is one message, and the nflog/nfqueue client
// libraries would bind a group instead of just asking.
func probeNfnl(subsys, msgType uint16, resID uint16, wantOK bool) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 2}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return os.NewSyscallError("bind", err)
	}
	msg := make([]byte, unix.NLMSG_HDRLEN+4)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], subsys<<8|msgType)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], 1) // sequence
	msg[16] = unix.AF_UNSPEC                  // nfgenmsg: family, version, res_id (big endian)
	binary.BigEndian.PutUint16(msg[18:], resID)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return os.NewSyscallError("sendto", err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return os.NewSyscallError("recvfrom", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR {
				continue // a reply with data (ctnetlink stats): the ack follows
			}
			if len(m.Data) < 4 {
				return errors.New("short netlink error message")
			}
			errno := unix.Errno(-int32(binary.NativeEndian.Uint32(m.Data)))
			switch {
			case errno == 0:
				return nil
			case errno == unix.EINVAL:
				return fmt.Errorf("subsystem %d absent: %w", subsys, errno)
			case !wantOK && (errno == unix.ENODEV || errno == unix.EPERM && os.Geteuid() == 0):
				return nil
			default:
				return fmt.Errorf("probe of subsystem %d: %w", subsys, errno)
			}
		}
	}
}

// probeAllExprs runs the nftables probes in a network namespace of their own when it can
// (CAP_SYS_ADMIN: the gokrazy image, tests), so not even the short-lived probe table shows in
// the box's ruleset; without it (the .deb's sandbox) they run in the box's namespace.
// Netfilter features are the kernel's, the same in every namespace.
func probeAllExprs() []error {
	errs := make([]error, len(nftProbes))
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The thread is left locked on purpose: Go ends it with the goroutine, so the private
		// namespace dies with it and never leaks to other goroutines.
		runtime.LockOSThread()
		_ = unix.Unshare(unix.CLONE_NEWNET) // on failure: probe in the current namespace
		for i, p := range nftProbes {
			errs[i] = probeExprs(p.exprs)
		}
	}()
	<-done
	return errs
}

// AddWireGuardLink makes a kernel WireGuard interface named name; it fails where the kernel
// has no WireGuard (package vpn then runs the user-space implementation).
func AddWireGuardLink(name string) error {
	return netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name}})
}

// probeWireGuard makes a kernel WireGuard link and removes it again.
func probeWireGuard() error {
	const name = "applwgprobe"
	if l, err := netlink.LinkByName(name); err == nil {
		_ = netlink.LinkDel(l) // left by a probe that died half-way
	}
	if err := AddWireGuardLink(name); err != nil {
		return err
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkDel(l)
}
