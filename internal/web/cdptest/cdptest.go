// Package cdptest drives a headless Chromium over the DevTools pipe for the pages' browser tests.
package cdptest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ChromiumArgs are the flags of a headless Chromium the tests drive over the DevTools pipe
// (the page is opened with Browser.Open).
var ChromiumArgs = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
	"--remote-debugging-pipe"}

// Launch starts br (chromium with ChromiumArgs, its last argument the first page) with the
// DevTools pipe on its fd 3 and 4, and kills its process group when the test ends.
func Launch(t testing.TB, br *exec.Cmd) *Browser {
	t.Helper()
	c, stop, err := Start(br)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return c
}

// Start is Launch for a program that is not a test (integration/vmsetup): stop kills the
// browser's process group.
func Start(br *exec.Cmd) (c *Browser, stop func(), err error) {
	toR, toW, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("devtools pipe: %w", err)
	}
	fromR, fromW, err := os.Pipe()
	if err != nil {
		toR.Close()
		toW.Close()
		return nil, nil, fmt.Errorf("devtools pipe: %w", err)
	}
	br.ExtraFiles = []*os.File{toR, fromW} // fd 3: commands in, fd 4: answers out
	br.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = br.Start()
	toR.Close()
	fromW.Close()
	if err != nil {
		toW.Close()
		fromR.Close()
		return nil, nil, fmt.Errorf("start %s: %w", br.Path, err)
	}
	stop = func() {
		_ = syscall.Kill(-br.Process.Pid, syscall.SIGKILL) // the browser's own process group
		_ = br.Wait()
	}
	return newBrowser(toW, fromR), stop, nil
}

// Browser is a minimal Chrome DevTools Protocol client over --remote-debugging-pipe:
// Chromium reads NUL-terminated JSON commands on its fd 3 and writes replies and events on
// its fd 4. A pipe needs no port in the namespace and no websocket library; the few
// commands the browser tests need do not justify chromedp and its dependencies.
type Browser struct {
	w       io.WriteCloser
	mu      sync.Mutex
	next    int
	pending map[int]chan reply
	session string
	err     error
}

type reply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func newBrowser(toBrowser io.WriteCloser, fromBrowser *os.File) *Browser {
	c := &Browser{w: toBrowser, pending: map[int]chan reply{}}
	go func() {
		r := bufio.NewReader(fromBrowser)
		for {
			msg, err := r.ReadBytes(0)
			if err != nil {
				c.mu.Lock()
				c.err = fmt.Errorf("devtools pipe: %w", err)
				for id, ch := range c.pending {
					close(ch)
					delete(c.pending, id)
				}
				c.mu.Unlock()
				return
			}
			var m struct {
				ID int `json:"id"`
				reply
			}
			if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
				continue // an event: not needed, the test polls the page
			}
			c.mu.Lock()
			ch := c.pending[m.ID]
			delete(c.pending, m.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- m.reply
			}
		}
	}()
	return c
}

// Call sends a command (to the attached page once Open has run) and decodes its result.
func (c *Browser) Call(method string, params any, result any) error {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.next++
	id := c.next
	ch := make(chan reply, 1)
	c.pending[id] = ch
	msg := map[string]any{"id": id, "method": method, "params": params}
	if c.session != "" && method[:7] != "Target." {
		msg["sessionId"] = c.session
	}
	b, _ := json.Marshal(msg)
	_, err := c.w.Write(append(b, 0))
	c.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return c.err
		}
		if r.Error != nil {
			return fmt.Errorf("%s: %s", method, r.Error.Message)
		}
		if result != nil {
			return json.Unmarshal(r.Result, result)
		}
		return nil
	case <-time.After(60 * time.Second):
		return fmt.Errorf("%s: no answer from the browser in 60 s", method)
	}
}

// Open makes a new page and attaches to it.
func (c *Browser) Open(url string) error {
	var t struct{ TargetID string }
	if err := c.Call("Target.createTarget", map[string]any{"url": url}, &t); err != nil {
		return err
	}
	var a struct{ SessionID string }
	if err := c.Call("Target.attachToTarget", map[string]any{"targetId": t.TargetID, "flatten": true}, &a); err != nil {
		return err
	}
	c.session = a.SessionID
	return c.Call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 1700, "deviceScaleFactor": 1, "mobile": false}, nil)
}

// Eval runs JavaScript in the page and returns its value as JSON.
func (c *Browser) Eval(expr string) (json.RawMessage, error) {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := c.Call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r); err != nil {
		return nil, err
	}
	if r.ExceptionDetails != nil {
		return nil, errors.New("javascript: " + r.ExceptionDetails.Text)
	}
	return r.Result.Value, nil
}

// Text is the text of the first element selector matches ("" without one).
func (c *Browser) Text(selector string) string {
	v, err := c.Eval(fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, selector))
	if err != nil {
		return ""
	}
	var s string
	_ = json.Unmarshal(v, &s)
	return s
}

// Click presses the mouse on the middle of the element, as a person would.
func (c *Browser) Click(selector string) error {
	v, err := c.Eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return null;
		e.scrollIntoView({block: "center"}); const r = e.getBoundingClientRect(); return [r.x + r.width/2, r.y + r.height/2]; })()`, selector))
	if err != nil {
		return err
	}
	var xy []float64
	if json.Unmarshal(v, &xy) != nil || len(xy) != 2 {
		return fmt.Errorf("click: no element %s", selector)
	}
	for _, typ := range []string{"mouseMoved", "mousePressed", "mouseReleased"} {
		if err := c.Call("Input.dispatchMouseEvent", map[string]any{"type": typ, "x": xy[0], "y": xy[1], "button": "left", "clickCount": 1}, nil); err != nil {
			return err
		}
	}
	return nil
}

// TypeText types into the focused element.
func (c *Browser) TypeText(s string) error {
	return c.Call("Input.insertText", map[string]any{"text": s}, nil)
}

// Screenshot is the page's viewport as PNG.
func (c *Browser) Screenshot() ([]byte, error) {
	var r struct{ Data []byte }
	err := c.Call("Page.captureScreenshot", map[string]any{"format": "png"}, &r)
	return r.Data, err
}

// Shoot saves a screenshot of one element in the test's artifact directory
// (go test -artifacts -outputdir DIR keeps them).
func Shoot(t *testing.T, c *Browser, sel, name string) {
	t.Helper()
	v, err := c.Eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.scrollIntoView(); const r = e.getBoundingClientRect();
		return [r.x + window.scrollX, r.y + window.scrollY, r.width, r.height]; })()`, sel))
	var r []float64
	if err != nil || json.Unmarshal(v, &r) != nil || len(r) != 4 {
		t.Fatalf("screenshot of %s: %v", sel, err)
	}
	var out struct{ Data []byte }
	if err := c.Call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": r[0], "y": r[1], "width": r[2], "height": r[3], "scale": 1}}, &out); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, out.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
