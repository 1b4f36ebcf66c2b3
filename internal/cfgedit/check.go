package cfgedit

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/netcfg"
)

// Problem is one error of a candidate, where `appliance check` would put it.
type Problem struct {
	Line  int    `json:"line,omitempty"`
	Col   int    `json:"col,omitempty"`
	Field string `json:"field,omitempty"`
	Msg   string `json:"msg"`
	Text  string `json:"text"` // file:line:col: field: message
}

// Check is what a candidate would do: its errors, or the firewall it changes and whether
// that lets more of the internet in.
type Check struct {
	Errors   []Problem `json:"errors"`
	Warnings []string  `json:"warnings"`
	// Firewall is the change of the nft ruleset as a line diff ("-", "+", "  " lines).
	Firewall string `json:"firewall_diff"`
	// Widening names each set element and accepting rule the candidate adds: who may reach
	// the office or the box grows. Applying it needs force.
	Widening []string `json:"widening"`
	Changed  bool     `json:"changed"` // the candidate differs from the file in force

	err error
}

// CheckFile parses candidate as the file at path (so errors name it) and compares its
// firewall with that of cur (nil or unparsable: no firewall yet, so everything widens): what
// `appliance check`, the page and a config from the boot partition are checked with.
func CheckFile(path string, cur, candidate []byte) Check {
	c := Check{Changed: string(cur) != string(candidate), Errors: []Problem{}, Warnings: []string{}, Widening: []string{}}
	next, err := config.Parse(path, candidate)
	if err != nil {
		c.err = err
		var es config.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				c.Errors = append(c.Errors, Problem{Line: e.Line, Col: e.Col, Field: e.Field, Msg: e.Msg, Text: e.Error()})
			}
		} else {
			c.Errors = append(c.Errors, Problem{Msg: err.Error(), Text: err.Error()})
		}
		return c
	}
	c.Warnings = append(c.Warnings, next.Warnings...)
	newT := netcfg.Build(next)
	oldT := &netcfg.Table{Name: netcfg.TableName}
	if prev, err := config.Parse(path, cur); err == nil {
		oldT = netcfg.Build(prev)
	}
	c.Firewall = lineDiff(oldT.Text(), newT.Text())
	c.Widening = widening(oldT, newT)
	return c
}

// widening lists what newT lets in that oldT did not: elements added to the sets rules
// match sources and interfaces with, accepting rules added, and chains whose policy became
// accept. The block sets are left out: their elements are the blocklist's, not the config's.
func widening(oldT, newT *netcfg.Table) []string {
	out := []string{}
	oldSets := map[string]*netcfg.Set{}
	for _, s := range oldT.Sets {
		oldSets[s.Name] = s
	}
	for _, s := range newT.Sets {
		if s.Dynamic || s.Timeout {
			continue
		}
		var before []string
		if o := oldSets[s.Name]; o != nil {
			before = o.Elems
		}
		for _, el := range s.Elems {
			if !coveredBy(el, before) {
				out = append(out, fmt.Sprintf("set %s (%s) gains %s", s.Name, s.Comment, el))
			}
		}
	}
	oldRules := map[string]bool{}
	oldPolicy := map[string]string{}
	for _, ch := range oldT.Chains {
		oldPolicy[ch.Name] = ch.Policy
		for _, r := range ch.Rules {
			oldRules[ch.Name+"\x00"+r.Text()] = true
		}
	}
	for _, ch := range newT.Chains {
		if ch.Policy == "accept" && oldPolicy[ch.Name] == "drop" {
			out = append(out, fmt.Sprintf("chain %s: policy drop becomes accept", ch.Name))
		}
		for _, r := range ch.Rules {
			if r.Verdict == netcfg.Drop || r.Verdict == netcfg.Return || r.Verdict == netcfg.Masquerade {
				continue
			}
			if !oldRules[ch.Name+"\x00"+r.Text()] {
				out = append(out, fmt.Sprintf("chain %s: new rule %s", ch.Name, r.Text()))
			}
		}
	}
	return out
}

// coveredBy says whether the element el (an address, a network or a name) was already in,
// or inside a network of, the elements before.
func coveredBy(el string, before []string) bool {
	if slices.Contains(before, el) {
		return true
	}
	p, err := parseElem(el)
	if err != nil {
		return false
	}
	for _, b := range before {
		q, err := parseElem(b)
		if err == nil && q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func parseElem(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.ParsePrefix(s)
}

// maxDiffCells bounds the diff's table (lines × lines): a ruleset is a few hundred lines; a
// bigger pair is shown as removed and added whole rather than costing the box its memory.
const maxDiffCells = 4 << 20

// lineDiff is a line diff of a and b, with two lines of context around each change. No diff
// library is in the module graph and a longest-common-subsequence table over a ruleset is a
// few dozen lines, so it is written here.
func lineDiff(a, b string) string {
	x, y := strings.Split(strings.TrimSuffix(a, "\n"), "\n"), strings.Split(strings.TrimSuffix(b, "\n"), "\n")
	type op struct {
		kind byte // ' ', '-', '+'
		line string
	}
	var ops []op
	if len(x)*len(y) > maxDiffCells {
		for _, l := range x {
			ops = append(ops, op{'-', l})
		}
		for _, l := range y {
			ops = append(ops, op{'+', l})
		}
	} else {
		// lcs[i][j] is the common subsequence's length of x[i:] and y[j:].
		lcs := make([][]int32, len(x)+1)
		for i := range lcs {
			lcs[i] = make([]int32, len(y)+1)
		}
		for i := len(x) - 1; i >= 0; i-- {
			for j := len(y) - 1; j >= 0; j-- {
				if x[i] == y[j] {
					lcs[i][j] = lcs[i+1][j+1] + 1
				} else {
					lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
				}
			}
		}
		i, j := 0, 0
		for i < len(x) || j < len(y) {
			switch {
			case i < len(x) && j < len(y) && x[i] == y[j]:
				ops = append(ops, op{' ', x[i]})
				i, j = i+1, j+1
			case j < len(y) && (i == len(x) || lcs[i][j+1] >= lcs[i+1][j]):
				ops = append(ops, op{'+', y[j]})
				j++
			default:
				ops = append(ops, op{'-', x[i]})
				i++
			}
		}
	}
	const context = 2
	show := make([]bool, len(ops))
	for k, o := range ops {
		if o.kind != ' ' {
			for c := max(k-context, 0); c <= min(k+context, len(ops)-1); c++ {
				show[c] = true
			}
		}
	}
	var out strings.Builder
	for k, o := range ops {
		if !show[k] {
			continue
		}
		if k > 0 && !show[k-1] && out.Len() > 0 {
			out.WriteString("...\n")
		}
		fmt.Fprintf(&out, "%c %s\n", o.kind, o.line)
	}
	return out.String()
}
