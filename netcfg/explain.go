package netcfg

import (
	"fmt"
	"strings"
)

// The status page explains the ruleset in words: each rule as a sentence built from its
// comment, its matches and its verdict, each chain by what passes through it.

// ChainWords is one chain in words, with its rules.
type ChainWords struct {
	Name   string      `json:"name"`
	Words  string      `json:"words"` // what passes through it, and what happens when no rule decides
	Policy string      `json:"policy"`
	Rules  []RuleWords `json:"rules"`
}

// RuleWords is one rule in words. N tells apart rules of a chain with the same comment (the
// IPv4 and IPv6 halves of one purpose), in order: chain, comment and N find a rule in the
// kernel, as Apply does to carry its counter over.
type RuleWords struct {
	Comment string `json:"comment"`
	N       int    `json:"n"`
	Words   string `json:"words"`
	Text    string `json:"nft"`
}

// hookWords say what passes through a chain at each hook.
var hookWords = map[string]string{
	"prerouting":  "every packet as it arrives, before the box decides where it goes",
	"input":       "packets to the box itself",
	"forward":     "packets passing through the box, between the internet and the office",
	"output":      "packets the box itself sends",
	"postrouting": "every packet as it leaves",
}

// Words explains every chain of t and its rules.
func (t *Table) Words() []ChainWords {
	comments := map[string]string{}
	for _, s := range t.Sets {
		comments[s.Name] = s.Comment
	}
	var out []ChainWords
	for _, c := range t.Chains {
		cw := ChainWords{Name: c.Name, Policy: c.Policy, Words: hookWords[c.Hook]}
		if c.Type == "nat" {
			cw.Words += " (address translation)"
		}
		switch c.Policy {
		case "drop":
			cw.Words += "; what no rule lets through is dropped"
		case "accept":
			cw.Words += "; what no rule stops goes on"
		}
		seen := map[string]int{}
		for _, r := range c.Rules {
			n := seen[r.Comment]
			seen[r.Comment]++
			cw.Rules = append(cw.Rules, RuleWords{Comment: r.Comment, N: n, Words: r.words(comments), Text: r.Text()})
		}
		out = append(out, cw)
	}
	return out
}

// words is the rule as a sentence: "SIP from trusted SIP trunk providers ... to 192.168.50.10,
// UDP port 5060: let through".
func (r Rule) words(sets map[string]string) string {
	var conds []string
	for _, m := range r.Match {
		if w := matchWords(m, sets); w != "" {
			conds = append(conds, w)
		}
	}
	s := r.Comment
	if s == "" {
		s = "rule"
	}
	if len(conds) > 0 && !(len(conds) == 1 && conds[0] == s) {
		s += " (" + strings.Join(conds, ", ") + ")"
	}
	return s + ": " + verdictWords(r.Verdict)
}

// ifaceWords name the interface sets by where they lead.
var ifaceWords = map[string]string{"uplinks": "the internet", "lan": "the office LAN"}

func setWords(name string, sets map[string]string) string {
	if w, ok := ifaceWords[name]; ok {
		return w
	}
	if c := sets[name]; c != "" {
		return c
	}
	return "set " + name
}

func matchWords(m Match, sets map[string]string) string {
	switch m := m.(type) {
	case ifnameIn:
		dir := "from"
		if m.out {
			dir = "to"
		}
		if m.invert {
			return "not " + dir + " " + setWords(m.set, sets)
		}
		return dir + " " + setWords(m.set, sets)
	case oifNotIn:
		return "not to " + setWords(string(m), sets)
	case iifname:
		return "from interface " + string(m)
	case addrMatch:
		dir := "from"
		if m.dst {
			dir = "to"
		}
		if m.set != "" {
			return dir + " " + setWords(m.set, sets)
		}
		return dir + " " + m.addr.String()
	case l4:
		p := strings.ToUpper(m.proto)
		switch {
		case m.icmpType != "":
			return p + " " + m.icmpType
		case m.sport[0] != 0 && m.dport[0] != 0:
			return fmt.Sprintf("%s from port %s to port %s", p, portText(m.sport), portText(m.dport))
		case m.dport[0] != 0:
			return fmt.Sprintf("%s port %s", p, portText(m.dport))
		case m.sport[0] != 0:
			return fmt.Sprintf("%s from port %s", p, portText(m.sport))
		}
		return p
	case nfproto:
		return "" // the sets and addresses already say the family
	case ctState:
		return "connections " + strings.Join(m, " or ")
	case ctDNAT:
		return "port-forwarded by the box"
	case limit:
		return fmt.Sprintf("at most %d a second", m.rate)
	case meter:
		return fmt.Sprintf("once one source sends more than %d a second", m.rate)
	case noteIn:
		return "" // the comment says it
	case ctMarked:
		return "connections marked with the uplink they came in on"
	case payloadMatch:
		if m.invert {
			return fmt.Sprintf("payload not starting %q", m.data)
		}
		return fmt.Sprintf("payload %q", m.data)
	case worded: // voice.go's
		return m.words()
	}
	return m.text()
}

// worded is a match or verdict that says itself in words.
type worded interface{ words() string }

func verdictWords(v Verdict) string {
	switch v {
	case Accept:
		return "let through"
	case Drop:
		return "dropped"
	case Return:
		return "not checked further here"
	case Continue:
		return "noted, then the next rules decide"
	case Masquerade:
		return "sent out with the uplink's address"
	}
	switch v.(type) {
	case setCtMark:
		return "the connection remembers its uplink"
	case markFromCt:
		return "sent back through that uplink"
	}
	if w, ok := v.(worded); ok { // voice.go's
		return w.words()
	}
	if d, ok := v.(dnat); ok {
		if d.port != 0 {
			return fmt.Sprintf("forwarded to %s port %d", d.to, d.port)
		}
		return "forwarded to " + d.to.String()
	}
	return v.text()
}
