package netcfg

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// RuleCounter is one rule's counter in table inet appliance, as the kernel has it.
type RuleCounter struct {
	Chain, Comment string
	Packets, Bytes uint64
}

// RuleCounters reads the counters of the rules in the named chains of table inet appliance
// (every rule the owner writes carries a counter and its comment). A chain or table not in
// the kernel (yet) has none: no error.
func (f *Firewall) RuleCounters(chains ...string) ([]RuleCounter, error) {
	c, err := f.conn()
	if err != nil {
		return nil, err
	}
	var out []RuleCounter
	tbl := nftTable()
	for _, chain := range chains {
		rules, err := c.GetRules(tbl, &nftables.Chain{Name: chain, Table: tbl})
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			f.reset()
			return out, fmt.Errorf("netcfg: read the %s chain's counters: %w", chain, err)
		}
		for _, r := range rules {
			rc := RuleCounter{Chain: chain}
			rc.Comment, _ = userdata.GetString(r.UserData, userdata.TypeComment)
			for _, e := range r.Exprs {
				if cn, ok := e.(*expr.Counter); ok {
					rc.Packets, rc.Bytes = cn.Packets, cn.Bytes
				}
			}
			out = append(out, rc)
		}
	}
	return out, nil
}
