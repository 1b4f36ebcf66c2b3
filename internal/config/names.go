package config

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxIfaceName is the longest interface name the kernel takes (IFNAMSIZ less the NUL).
const maxIfaceName = 15

// ifaceNameErr says why the kernel would refuse name for a network interface, or "". It
// mirrors the kernel's dev_valid_name: a name it refuses would only fail at start, and one
// with "/" or ".." would be a path under /sys and /proc/sys/net.
func ifaceNameErr(name string) string {
	switch {
	case name == "":
		return "an interface name is required"
	case len(name) > maxIfaceName:
		return fmt.Sprintf("%s is %d bytes long: the kernel takes interface names of at most %d", shortQuote(name), len(name), maxIfaceName)
	case name == "." || name == "..":
		return fmt.Sprintf("%q is not an interface name the kernel takes", name)
	}
	for i := 0; i < len(name); i++ {
		if b := name[i]; b == '/' || b == ':' || kernelSpace(b) {
			return fmt.Sprintf("%q contains %q, which the kernel refuses in interface names (no /, : or spaces)", name, string(rune(b)))
		}
	}
	return ""
}

// kernelSpace is the kernel's isspace: ASCII whitespace and Latin-1's no-break space byte.
func kernelSpace(b byte) bool {
	return b == ' ' || (b >= '\t' && b <= '\r') || b == 0xa0
}

// nameErr says why name cannot name a SIP peer, or "": peer names are shown on the status
// page and in alerts.
func nameErr(name string) string {
	if n := utf8.RuneCountInString(name); n > MaxNameLen {
		return fmt.Sprintf("the name is too long (%d characters; at most %d)", n, MaxNameLen)
	}
	if msg := badChars(name); msg != "" {
		return "the name " + msg
	}
	if strings.TrimSpace(name) == "" {
		return "the name is empty"
	}
	return ""
}

// maxHostname is the longest DNS name (RFC 1035).
const maxHostname = 253

// hostnameErr says why h is not a DNS name the status page could be reached by, or "".
func hostnameErr(h string) string {
	if len(h) > maxHostname {
		return fmt.Sprintf("%s is %d bytes long: a DNS name is at most %d", shortQuote(h), len(h), maxHostname)
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return fmt.Sprintf("%q is not a host name (like \"edge.office.lan\")", h)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Sprintf("%q is not a host name (like \"edge.office.lan\")", h)
			}
		}
	}
	return ""
}
