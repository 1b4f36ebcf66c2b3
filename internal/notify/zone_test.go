package notify

import (
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
)

// An email writes its times in the site's zone, each labelled with the zone.
func TestComposeInSiteZone(t *testing.T) {
	text := strings.Replace(string(config.Example()), `# timezone = "Europe/Berlin"`, `timezone = "Europe/Berlin"`, 1)
	cfg, err := config.Parse("site.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 7, 1, 12, 30, 0, 0, time.UTC) // 14:30 in Berlin (summer time)
	m := Compose(cfg, []events.Event{{Time: at, Kind: "sipguard.block", Severity: events.Alert, Message: "blocked 192.0.2.66"}})
	for _, want := range []string{"between 2026-07-01 14:30:00 CEST and 2026-07-01 14:30:00 CEST", "  2026-07-01 14:30:00 CEST  alert"} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("email lacks %q:\n%s", want, m.Body)
		}
	}
}
