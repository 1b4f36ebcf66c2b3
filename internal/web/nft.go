package web

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

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

// FirewallState is what the kernel holds: whether the table is loaded and its rules' hits.
type FirewallState struct {
	Loaded bool       `json:"loaded"`
	Table  string     `json:"table"`
	Rules  int        `json:"rules"`
	Hits   []RuleHits `json:"hits,omitempty"`
	Error  string     `json:"error,omitempty"`
}

// ReadFirewall reads the rules and counters of table inet appliance over netlink (every
// rule netcfg writes carries a counter and its comment as userdata).
func ReadFirewall() FirewallState {
	st := FirewallState{Table: "inet " + netcfg.TableName}
	c, err := nftables.New()
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
