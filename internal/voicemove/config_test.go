package voicemove

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab"
)

// [voice.flood] has working defaults, and a bad value names the file, its line and column
// and the setting.
func TestFloodConfig(t *testing.T) {
	c, err := config.Parse("lab.toml", lab.Config)
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Voice.Flood; !f.Move || f.Share != 50 || f.Loss != 5 || f.Jitter != 30*time.Millisecond || f.After != 3*time.Second || f.Calm != 10*time.Second {
		t.Fatalf("defaults %+v", f)
	}
	bad := string(lab.Config) + "\n[voice.flood]\nshare = 500\ncalm = \"1s\"\n"
	line := strings.Count(string(lab.Config), "\n") + 3
	_, err = config.Parse("office.toml", []byte(bad))
	if err == nil {
		t.Fatal("share = 500 taken")
	}
	for _, want := range []string{"office.toml:" + strconv.Itoa(line) + ":9: voice.flood.share", "must be 5 to 100", "voice.flood.calm", "must be 2s to 10m"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// Without a backup uplink the move is off.
	one := strings.Replace(string(lab.Config), "[uplink.backup]", "[unused_backup]", 1)
	one = one[:strings.Index(one, "[unused_backup]")] + one[strings.Index(one, "[pbx]"):]
	if c, err = config.Parse("one.toml", []byte(one)); err != nil {
		t.Fatal(err)
	}
	if c.Voice.Flood.Move {
		t.Fatal("the move is on with no backup uplink")
	}
}
