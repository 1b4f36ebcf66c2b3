// Package netcfg owns the box's firewall: the nftables ruleset built from the config, and the blocklist, through one Owner.
//
// The ruleset is one description (Build) rendered both as nft text and as netlink. The
// Owner, a single goroutine with one lasting netlink connection, applies it in one atomic
// batch, keeps the blocklist with every claim on each entry, never blocks what the box
// depends on (Protects), saves the blocklist crash-safe and repairs drift; other parts send
// it typed requests. Its jobs have files of their own: the request loop (owner.go), config
// apply and protections (setconfig.go), blocklist claims (claims.go), element diffs and
// writes (elements.go), expiry (expire.go), drift repair (reconcile.go), saving
// (persist.go), the published snapshot (snapshot.go); what is never blocked is in
// protect.go and protects.go.
//
// The Owner is not the kernel's only writer. Each kernel object the box changes has one
// owner, and packages wan and vpn write theirs themselves (they are not behind the Owner's
// requests). "Config apply" below is the Owner's SetConfig: at start, at each reload, and
// when a trusted peer's or admin's name resolves to new addresses (SetResolved).
//
//	kernel object                        owner               how it is repaired
//	-----------------------------------  ------------------  ---------------------------------------------
//	nftables table inet appliance: its   netcfg Owner        the ruleset generation is checked every 2 s;
//	  chains and the config's sets                           after a foreign change the table is compared
//	  (uplinks, lan, sip_peers4/6,                           (Verify) and applied again in one batch
//	  admin4/6, fwd_*, vpn)                                  (reconcile.go); also at each config apply
//	the same table in the setup state    internal/setup      written once as the setup state starts (no
//	  (the box has no config yet)        (Serve)             config: LAN-only, setup.Firewall); the Owner
//	                                                         replaces it in one batch when the daemon starts
//	block sets block4, block6,           netcfg Owner        the same check: their elements are compared,
//	  blocknet4, blocknet6                                   or past 20,000 all written again; kept across
//	                                                         re-applies. With no daemon running, the CLI's
//	                                                         block and unblock write them (offline.go)
//	dynamic sets dropped_*, sip_rate4/6  netcfg Owner (the   made again when missing, as above; their
//	                                     sets), the kernel   elements are the packet path's (rules add
//	                                     (their elements)    them, timeouts expire them)
//	main table: each uplink's metric     netcfg Owner for a  static: at each config apply (links.go);
//	  100/200 default route              static uplink, wan  DHCP: at the first ACK of a lease session and
//	                                     for a DHCP one      at each change of lease (wan/dhcp.go)
//	main table: the metric 50 default    wan                 every 2 s while wan runs; removed when it
//	  route (the active uplink)                              stops (wan/route.go)
//	tables 101, 102 (reply routing, one  wan                 every 2 s and at each lease while wan runs;
//	  per uplink) and their ip rules                         removed when it stops; not made without
//	  (priority 1001, 1002; fwmark                           policy routing (wan/route.go)
//	  ReplyMark(i)/ReplyMarkMask)
//	addresses: the LAN's, a static       netcfg Owner        at each config apply; other global addresses
//	  uplink's                                               on those links are removed (links.go)
//	addresses: a DHCP uplink's           wan                 every ACK writes it with the lease's lifetime;
//	                                                         removed when the lease ends (wan/dhcp.go)
//	links up; ip_forward, rp_filter      netcfg Owner        at each config apply (links.go)
//	WireGuard link [vpn] interface: the  vpn                 every 10 s and at each reload; a link that is
//	  link, its MTU, address and peers                       gone ends the part, whose supervisor makes it
//	                                                         again (internal/vpn; kernelfeat makes and
//	                                                         deletes a probe link once at start)
//	relay tunnel [relay] interface (TUN, relay               every 5 s; removed when it stops
//	  wireguard-go), table 110 and its                       (internal/relay/box); the rules and the
//	  ip rules (priority 90 fwmark                           table exist only while the relay answers
//	  VoiceMark; 1009/1010 all_traffic)                      on a line (voice goes direct otherwise)
//	ip rule priority 95 fwmark           voicemove           every 2 s while voice is moved off a flooded
//	  VoiceMark/0x7f00 lookup 102 (the                       line; removed when voice comes back and when
//	  backup's table)                                        the part starts or stops (internal/voicemove)
//	qdiscs of each uplink with an upload  the shaper part     every 2 s compared with the kernel's and put
//	  rate: HTB root 1: and classes 1:1,  (internal/shaper)  back (tc qdisc del, a changed class, a
//	  1:10, 1:20, 1:30, their pfifo (or                      modem's interface that comes back); autorate
//	  fq_codel) leaves 10:, 20:, 30:                         changes the classes' rates; removed when the
//	                                                         part stops or the uplink loses its rate
//	qdiscs of the other links            none                the box sets none
//
// Links, addresses and routes are the Owner's only with OwnerOptions.Links (the daemon sets
// it). Conntrack entries are nobody's state: wan deletes an old uplink's flows at failover
// and a dead line's when it goes down, voicemove the voice flows when voice moves, and
// sipguard a blocked source's.
package netcfg
