package config

import (
	"strings"
	"testing"
)

func TestDataBudget(t *testing.T) {
	on := strings.Replace(string(Example()), "mode = \"dhcp\"\n", "mode = \"dhcp\"\ndata_budget = \"20GB\"\nbilling_day = 31\n", 1)
	c, err := Parse("on.toml", []byte(on))
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Uplink.Backup; b.DataBudget != 20_000_000_000 || b.BillingDay != 31 || c.Uplink.Primary.BillingDay != 1 || c.Uplink.Primary.DataBudget != 0 {
		t.Fatalf("budget %d day %d; primary %+v", b.DataBudget, b.BillingDay, c.Uplink.Primary)
	}
	if s := Bytes(1_500_000).String(); s != "1.5 MB" {
		t.Errorf("1.5 MB reads %q", s)
	}
	for _, x := range []struct{ set, field, msg string }{
		{"data_budget = \"20 parsecs\"", "uplink.backup.data_budget", "is not an amount of data"},
		{"data_budget = \"1kB\"", "uplink.backup.data_budget", "at least 1MB"},
		{"billing_day = 0", "uplink.backup.billing_day", "from 1 to 31"},
		{"billing_day = 32", "uplink.backup.billing_day", "from 1 to 31"},
	} {
		bad := strings.Replace(string(Example()), "mode = \"dhcp\"\n", "mode = \"dhcp\"\n"+x.set+"\n", 1)
		_, err := Parse("bad.toml", []byte(bad))
		es, ok := err.(Errors)
		if !ok || len(es) != 1 || es[0].Field != x.field || !strings.Contains(es[0].Msg, x.msg) || es[0].Line == 0 || es[0].Col == 0 {
			t.Errorf("%s: %v, want one error at %s saying %q with its line and column", x.set, err, x.field, x.msg)
			continue
		}
		if !strings.Contains(strings.Split(bad, "\n")[es[0].Line-1], x.set) {
			t.Errorf("%s: reported at line %d", x.set, es[0].Line)
		}
	}
}
