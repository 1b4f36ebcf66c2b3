package setup

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
)

// tomlDoc is a TOML text as blocks, one per table, edited table by table so that every
// comment stays where it was. The module's TOML library (BurntSushi/toml) drops comments
// when it encodes and has no editable syntax tree, and no library in the module keeps
// them; the text edited is the project's own example config (config.Example), so a
// line-based editor of its tables is enough. Every value written is encoded by the TOML
// library itself: no answer is ever pasted into the text unquoted.
type tomlDoc struct {
	blocks []*tomlBlock
}

// tomlBlock is a table: the comment lines right above its header (no blank line between),
// the header, and the lines after it up to the next block. The first block (name "") is
// the root table before any header.
type tomlBlock struct {
	name  string // "uplink.primary"; an array table's name is its key, like "backup.pbx"
	lines []string
	head  int // index of the header line in lines; -1 for the root block
}

func parseDoc(text string) *tomlDoc {
	d := &tomlDoc{}
	cur := &tomlBlock{head: -1}
	d.blocks = append(d.blocks, cur)
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		name, ok := headerName(line)
		if !ok {
			cur.lines = append(cur.lines, line)
			continue
		}
		// The comment lines right above the header describe this table: they move with it.
		i := len(cur.lines)
		for i > 0 && strings.HasPrefix(strings.TrimSpace(cur.lines[i-1]), "#") {
			i--
		}
		next := &tomlBlock{name: name, lines: append([]string{}, cur.lines[i:]...)}
		cur.lines = cur.lines[:i]
		next.head = len(next.lines)
		next.lines = append(next.lines, line)
		d.blocks = append(d.blocks, next)
		cur = next
	}
	return d
}

// headerName is the table named by a header line ("[a.b]" or "[[a.b]]"), if line is one.
func headerName(line string) (string, bool) {
	t := strings.TrimSpace(line)
	if !strings.HasPrefix(t, "[") {
		return "", false
	}
	if i := strings.Index(t, "#"); i >= 0 { // the example's headers carry no quoted keys
		t = strings.TrimSpace(t[:i])
	}
	t = strings.TrimSuffix(strings.TrimPrefix(t, "[["), "]]")
	t = strings.TrimSuffix(strings.TrimPrefix(t, "["), "]")
	return strings.TrimSpace(t), true
}

func (d *tomlDoc) String() string {
	var b strings.Builder
	for _, bl := range d.blocks {
		for _, l := range bl.lines {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// table is the first block named name; an error when the example has none (a change of
// the example this code must follow).
func (d *tomlDoc) table(name string) (*tomlBlock, error) {
	for _, bl := range d.blocks {
		if bl.name == name {
			return bl, nil
		}
	}
	return nil, fmt.Errorf("setup: the example config has no [%s]", name)
}

// drop removes every block named name (an array table's every entry), with its comments.
func (d *tomlDoc) drop(name string) {
	out := d.blocks[:0]
	for _, bl := range d.blocks {
		if bl.name != name {
			out = append(out, bl)
		}
	}
	d.blocks = out
}

// rename gives the table a new name in its header.
func (b *tomlBlock) rename(name string) {
	b.lines[b.head] = "[" + name + "]"
	b.name = name
}

// keyLine is the index of the line setting key in the table, or -1; commented says to
// look for a commented-out setting ("# key = ...") instead.
func (b *tomlBlock) keyLine(key string, commented bool) int {
	for i := b.head + 1; i < len(b.lines); i++ {
		t := strings.TrimSpace(b.lines[i])
		if commented {
			var ok bool
			if t, ok = strings.CutPrefix(t, "#"); !ok {
				continue
			}
			t = strings.TrimSpace(t)
		}
		if rest, ok := strings.CutPrefix(t, key); ok && strings.HasPrefix(strings.TrimSpace(rest), "=") {
			return i
		}
	}
	return -1
}

// set writes key = value (value encoded as TOML) in the table: over its setting, keeping
// the setting's comment; else after its commented-out example; else after the table's
// last setting (or its header).
func (b *tomlBlock) set(key string, value any) error {
	v, err := tomlValue(value)
	if err != nil {
		return fmt.Errorf("setup: write %s: %w", key, err)
	}
	line := key + " = " + v
	if i := b.keyLine(key, false); i >= 0 {
		old := b.lines[i]
		if c := commentAt(old); c >= 0 {
			pad := max(c-len(line), 2)
			line += strings.Repeat(" ", pad) + old[c:]
		}
		b.lines[i] = line
		return nil
	}
	at := b.keyLine(key, true)
	if at < 0 {
		at = b.head
		for i := b.head + 1; i < len(b.lines); i++ {
			if t := strings.TrimSpace(b.lines[i]); t != "" && !strings.HasPrefix(t, "#") {
				at = i
			}
		}
	}
	b.insert(at+1, line)
	return nil
}

// unset removes the table's setting of key, if any.
func (b *tomlBlock) unset(key string) {
	if i := b.keyLine(key, false); i >= 0 {
		b.lines = append(b.lines[:i], b.lines[i+1:]...)
	}
}

// commentOut turns the table's settings into comments: the table stays as a guide, and
// every setting takes its default.
func (b *tomlBlock) commentOut() {
	for i := b.head + 1; i < len(b.lines); i++ {
		if t := strings.TrimSpace(b.lines[i]); t != "" && !strings.HasPrefix(t, "#") {
			b.lines[i] = "# " + b.lines[i]
		}
	}
}

// note adds comment lines right after the header.
func (b *tomlBlock) note(lines ...string) { b.insert(b.head+1, comments(lines)...) }

// noteEnd adds comment lines after the table's last line (before the blank lines that end it).
func (b *tomlBlock) noteEnd(lines ...string) {
	at := len(b.lines)
	for at > b.head+1 && strings.TrimSpace(b.lines[at-1]) == "" {
		at--
	}
	b.insert(at, comments(lines)...)
}

// insert puts lines before the table's line at.
func (b *tomlBlock) insert(at int, lines ...string) {
	b.lines = append(b.lines[:at], append(lines, b.lines[at:]...)...)
}

func comments(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = "# " + l
	}
	return out
}

// commentAt is the index of the comment ending a setting's line, or -1; a "#" inside a
// quoted string is not one.
func commentAt(line string) int {
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote == '"' && c == '\\':
			i++
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#':
			return i
		}
	}
	return -1
}

// tomlValue is v as the TOML library writes it: strings quoted and escaped, lists inline.
func tomlValue(v any) (string, error) {
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(map[string]any{"v": v}); err != nil {
		return "", err
	}
	s, ok := strings.CutPrefix(strings.TrimSuffix(b.String(), "\n"), "v = ")
	if !ok || strings.Contains(s, "\n") {
		return "", fmt.Errorf("unexpected TOML encoding %q", b.String())
	}
	return s, nil
}
