package web

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/netcfg"
)

// RuleHits is one rule of table inet appliance with its counter, named by its comment.
type RuleHits struct {
	Chain   string `json:"chain"`
	Handle  uint64 `json:"handle"`
	Comment string `json:"comment"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// FirewallState is what the kernel holds: whether the table is loaded, its rules' hits,
// and who the drop rules turned away (netcfg/dropped.go).
type FirewallState struct {
	Loaded  bool                   `json:"loaded"`
	Table   string                 `json:"table"`
	Rules   int                    `json:"rules"`
	Hits    []RuleHits             `json:"-"`                 // per kernel rule; the page and /metrics read Chains
	Dropped []netcfg.DroppedWindow `json:"dropped,omitempty"` // top sources and ports, last hour and day
	Error   string                 `json:"error,omitempty"`
	// Chains are the rules in words, grouped by chain and purpose (status, from the config).
	Chains []ChainView `json:"chains,omitempty"`
}

// ChainView is one chain in words with its rules grouped by purpose (their comment): the
// IPv4 and IPv6 halves, or the TCP and UDP ones, of one purpose are one line.
type ChainView struct {
	Name    string      `json:"name"`
	Words   string      `json:"words"`
	Groups  []RuleGroup `json:"groups"`
	Packets uint64      `json:"packets"` // all its rules'
}

// RuleGroup is the rules of a chain with one comment, their counters summed.
type RuleGroup struct {
	Comment  string   `json:"comment"`
	Sentence string   `json:"sentence"` // the rules as one sentence: "SIP (... UDP or TCP port 5060 ...): let through"
	Words    []string `json:"words"`    // one sentence per distinct rule
	NFT      []string `json:"nft"`      // the rules as nft text
	Packets  uint64   `json:"packets"`
	Bytes    uint64   `json:"bytes"`
}

// droppedTop is how many sources and ports the dropped view lists per window.
const droppedTop = 10

// ReadFirewall reads the rules and counters of table inet appliance over netlink (every
// rule netcfg writes carries a counter and its comment as userdata), in the current network
// namespace.
func ReadFirewall() FirewallState { return ReadFirewallIn(0) }

// ReadFirewallIn is ReadFirewall in the network namespace open at netnsFD (0: the current one).
func ReadFirewallIn(netnsFD int) FirewallState {
	st := FirewallState{Table: "inet " + netcfg.TableName}
	var opts []nftables.ConnOption
	if netnsFD > 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFD))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		st.Error = fmt.Sprintf("open netlink: %v", err)
		return st
	}
	tbl, err := c.ListTableOfFamily(netcfg.TableName, nftables.TableFamilyINet)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			st.Error = fmt.Sprintf("read table: %v", err)
		}
		return st
	}
	st.Loaded = true
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		st.Error = fmt.Sprintf("read chains: %v", err)
		return st
	}
	for _, ch := range chains {
		if ch.Table.Name != tbl.Name {
			continue
		}
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			st.Error = fmt.Sprintf("read rules of %s: %v", ch.Name, err)
			return st
		}
		for _, r := range rules {
			h := RuleHits{Chain: ch.Name, Handle: r.Handle}
			h.Comment, _ = userdata.GetString(r.UserData, userdata.TypeComment)
			for _, e := range r.Exprs {
				if cn, ok := e.(*expr.Counter); ok {
					h.Packets, h.Bytes = cn.Packets, cn.Bytes
				}
			}
			st.Hits = append(st.Hits, h)
		}
	}
	st.Rules = len(st.Hits)
	return st
}

// droppedEvery bounds how often the dropped sets are read: each holds up to a thousand
// elements under attack, and every open page's refresh and every scrape would read them.
const droppedEvery = 15 * time.Second

// firewallCache is the rules in words for the config in force, and the last read of the
// dropped sets.
type firewallCache struct {
	words ruleWords
	mu    sync.Mutex
	at    time.Time
	ws    []netcfg.DroppedWindow
	err   error
}

// droppedNow returns who the firewall turned away, read again when the last read is old.
func (s *Server) droppedNow(now time.Time) ([]netcfg.DroppedWindow, error) {
	d := &s.fw
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.at.IsZero() || now.Sub(d.at) >= droppedEvery || now.Before(d.at) {
		d.ws, d.err = s.o.ReadDropped(droppedTop)
		d.at = now
	}
	return d.ws, d.err
}

// ruleKey finds a kernel rule among cfg's: its chain, its comment and how many rules of
// that chain had the same comment before it (as netcfg carries counters over).
type ruleKey struct {
	chain, comment string
	n              int
}

// ruleWords are cfg's rules in words, made once per config (a reload makes a new one).
type ruleWords struct {
	mu     sync.Mutex
	cfg    *config.Config
	rules  map[ruleKey]netcfg.RuleWords
	chains map[string]string
}

func (w *ruleWords) get(cfg *config.Config) (map[ruleKey]netcfg.RuleWords, map[string]string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cfg != cfg || w.rules == nil {
		w.cfg, w.rules, w.chains = cfg, map[ruleKey]netcfg.RuleWords{}, map[string]string{}
		for _, c := range netcfg.Build(cfg).Words() {
			w.chains[c.Name] = c.Words
			for _, r := range c.Rules {
				w.rules[ruleKey{c.Name, r.Comment, r.N}] = r
			}
		}
	}
	return w.rules, w.chains
}

// chainViews explains the kernel's rules with the words of cfg's ruleset, chains in the
// kernel's order.
func (w *ruleWords) chainViews(cfg *config.Config, hits []RuleHits) []ChainView {
	words, chainWords := w.get(cfg)
	var out []ChainView
	seen := map[[2]string]int{}
	group := map[[2]string]int{} // index in its chain's groups
	for _, h := range hits {
		if len(out) == 0 || out[len(out)-1].Name != h.Chain {
			out = append(out, ChainView{Name: h.Chain, Words: chainWords[h.Chain], Groups: []RuleGroup{}})
		}
		cv := &out[len(out)-1]
		k := [2]string{h.Chain, h.Comment}
		n := seen[k]
		seen[k]++
		i, ok := group[k]
		if !ok {
			cv.Groups = append(cv.Groups, RuleGroup{Comment: h.Comment, Words: []string{}, NFT: []string{}})
			i = len(cv.Groups) - 1
			group[k] = i
		}
		g := &cv.Groups[i]
		g.Packets += h.Packets
		g.Bytes += h.Bytes
		cv.Packets += h.Packets
		rw, ok := words[ruleKey{h.Chain, h.Comment, n}]
		if !ok {
			rw = netcfg.RuleWords{Words: h.Comment + " (not in the configuration: applied before a change)"}
		}
		if !slices.Contains(g.Words, rw.Words) {
			g.Words = append(g.Words, rw.Words)
		}
		if rw.Text != "" {
			g.NFT = append(g.NFT, rw.Text)
		}
	}
	for i := range out {
		for j := range out[i].Groups {
			g := &out[i].Groups[j]
			g.Sentence = oneSentence(g.Comment, g.Words)
		}
	}
	return out
}

// oneSentence says the sentences of one purpose's rules as one when they differ in one word
// only ("UDP port 5060" and "TCP port 5060": "UDP or TCP port 5060"); otherwise the comment
// with how many rules it has.
func oneSentence(comment string, sentences []string) string {
	if len(sentences) == 1 {
		return sentences[0]
	}
	split := make([][]string, len(sentences))
	for i, s := range sentences {
		split[i] = strings.Fields(s)
		if len(split[i]) != len(split[0]) {
			return fmt.Sprintf("%s (%d rules)", comment, len(sentences))
		}
	}
	at := -1
	for k := range split[0] {
		for _, f := range split[1:] {
			if f[k] != split[0][k] {
				if at >= 0 && at != k {
					return fmt.Sprintf("%s (%d rules)", comment, len(sentences))
				}
				at = k
			}
		}
	}
	// The differing word may carry the sentence's punctuation: "(UDP", "5060):".
	trim := func(w string) (head, core, tail string) {
		core = strings.TrimLeft(w, "(")
		head = w[:len(w)-len(core)]
		c := strings.TrimRight(core, ",):")
		return head, c, core[len(c):]
	}
	head, _, tail := trim(split[0][at])
	var alts []string
	for _, f := range split {
		h, c, tl := trim(f[at])
		if h != head || tl != tail {
			return fmt.Sprintf("%s (%d rules)", comment, len(sentences))
		}
		if !slices.Contains(alts, c) {
			alts = append(alts, c)
		}
	}
	words := slices.Clone(split[0])
	words[at] = head + strings.Join(alts, " or ") + tail
	return strings.Join(words, " ")
}
