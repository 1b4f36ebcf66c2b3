package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/daemon"
	"github.com/officeedge/appliance/internal/shaper"
)

// speedtestCmd is `appliance wan speedtest NAME`: the daemon measures the uplink's download
// and upload against [voice] speedtest_url, outside the shaper, and the figures are printed
// with the upload setting they suggest.
func speedtestCmd(c control.Client, name string, asJSON bool, stdout io.Writer) error {
	c.Timeout = 3 * time.Minute // both directions, at most a minute each
	b, err := c.Call(context.Background(), http.MethodPost, daemon.PathSpeedtest+"?uplink="+url.QueryEscape(name), nil)
	if err != nil {
		return fmt.Errorf("wan speedtest: %w", err)
	}
	if asJSON {
		_, err := stdout.Write(b)
		return err
	}
	var r shaper.SpeedResult
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("wan speedtest: answer: %w", err)
	}
	fmt.Fprintf(stdout, "%s (%s) against %s, %s each way:\n", r.Uplink, r.Interface, r.Server, r.Duration)
	fmt.Fprintf(stdout, "  download %.2f Mbit/s\n  upload   %.2f Mbit/s\n", r.Download/1e6, r.Upload/1e6)
	fmt.Fprintf(stdout, "for the shaper: upload = \"%.0fkbit\" in [uplink.*] (it shapes to %d %% of it)\n", r.Upload/1e3, shaper.ShapedPercent)
	return nil
}
