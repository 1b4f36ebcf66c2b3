// Package sipguard watches SIP signalling to and from the PBX and blocks attackers in the kernel.
//
// Data path. Capture listens on the LAN interface with a cooked AF_PACKET socket and an
// in-kernel classic BPF filter (SIP and SIP-TLS ports, UDP and TCP, IPv4 and IPv6): the
// kernels we ship have no NFLOG or NFQUEUE. Every SIP packet to or from the PBX crosses the
// LAN interface once, after the raw-prerouting blocklist, so a blocked source costs nothing
// in user space. TLS cannot be read: new connections are counted, per source. Packets the
// kernel drops on a full capture socket (PACKET_STATISTICS) are counted in Stats.
//
// Per packet (Guard.Handle, no allocation): decode IP/UDP/TCP, copy into a shared evidence
// ring, reassemble SIP over TCP (stream.go: per-connection fixed buffers, segments placed by
// sequence number), scan the SIP header block (Parse), run the detectors (Engine.Observe).
// Identity is always the packet's source address (for a response: the address it answers),
// never a header, so a forged From/Via/Contact cannot get the trunk blocked.
//
// Detectors (thresholds in [sipguard]): scanner User-Agents (first packet), brute force
// (401/403/407 answers to requests that carried credentials, in a sliding window, and a slow
// count over hours), challenges never answered, extension enumeration (distinct users
// answered 404, or 403 without credentials), request flood, SIP-TLS connection rate, toll
// fraud (INVITEs to denied destinations; calls per minute and concurrent calls per internet
// source), and the posture check (auth name equal to the extension number). Beside each
// source, failures are counted per target extension (many sources guessing one password),
// per IPv6 /64 (blocked whole; so is a /64 with three offending addresses) and per IPv4 /24
// (aggregate.go). A source whose phones registered recently is a site (an office's NAT): one
// user failing there raises an alert naming the extension and throttles the site with short
// holds; only past a ceiling of failures a minute is the site blocked.
//
// At the limit: a source one failure from a verdict whose deciding credentialed request is
// on its way to the PBX is held in the kernel for a few seconds at once (a short sipguard
// claim on the owner, placed by its own worker), so its next request cannot pass while the
// PBX answers and the block is written; the PBX's failure answer is the verdict (extending
// the claim), a success lets the hold lapse.
//
// Proof (proof.go): a UDP source address may be forged, so a verdict is proven only when
// the packet that decided it shows its source receives what is sent to it: it sent back the
// digest nonce the PBX had sent to that address, or it came on a TCP/TLS connection whose
// handshake the source completed. Only proven blocks escalate and are shared with the fleet
// (Guard.Shared); unproven ones last at most Options.UnprovenBlockTime (10 minutes).
//
// Verdicts go to a worker: a block request to the owner of the kernel blocklist
// (netcfg.Owner, which merges it with other claims, persists it and restores it at start)
// with escalating timeouts (1h, 24h, 7d by default, for proven sources), conntrack entries of the source
// deleted, an event, sipguard's own record in blocks.json (reason, offense, evidence;
// dropped once the owner no longer holds the block), and, a few seconds later, a pcapng of
// the source's recent packets and an abuse report. Community lists (RunFeed) go to the
// owner as feeds. A capture pauses while its interface is down or gone and resumes after.
// Trusted peers and office hosts raise alerts instead of blocks; nothing the owner protects
// (Blocker.Protects: the one "never block" list) is asked to be blocked, and an offense
// from it is an alert naming the protection. Kernel backstops (netcfg/sipguard.go): a
// per-source packet-rate meter on the SIP port and a payload match dropping UDP INVITEs to denied destinations on their
// way out to the internet.
package sipguard
