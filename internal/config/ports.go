package config

// forwarded is a port or range the box forwards from the internet, with its field.
type forwarded struct {
	field string
	r     PortRange
	to    string // who it goes to, for messages
}

// forwardedPorts lists every port the PBX services and the extra forwards take.
func (c *Config) forwardedPorts() []forwarded {
	p := c.PBX
	var out []forwarded
	add := func(field string, r PortRange, to string) {
		if !r.IsZero() {
			out = append(out, forwarded{field, r, to})
		}
	}
	add("pbx.sip_port", p.SIPPort.Range(), "the PBX")
	add("pbx.sip_tls_port", p.SIPTLSPort.Range(), "the PBX")
	add("pbx.tunnel_port", p.TunnelPort.Range(), "the PBX")
	add("pbx.rtp_ports", p.RTPPorts, "the PBX")
	for _, w := range p.WebPorts {
		add("pbx.web_ports", w.Range(), "the PBX")
	}
	for _, n := range SortedNames(c.Forward) {
		f := c.Forward[n]
		add(key("forward", n, "ports"), f.Ports, f.To.String())
	}
	return out
}

// mgmtPort is a port the box serves itself.
type mgmtPort struct {
	port Port
	what string // "SSH port (admin.ssh_port)"
}

// managementPorts are the box's own ports: SSH, its web ports, and the status page's
// plain HTTP and HTTPS ports.
func (c *Config) managementPorts() []mgmtPort {
	var out []mgmtPort
	add := func(p Port, what string) {
		if p != 0 {
			out = append(out, mgmtPort{p, what})
		}
	}
	add(c.Admin.SSHPort, "SSH port (admin.ssh_port)")
	for _, w := range c.Admin.WebPorts {
		add(w, "web port (admin.web_ports)")
	}
	add(c.WebPort(), "status page port (web.port)")
	add(c.Web.HTTPSPort, "status page HTTPS port (web.https_port)")
	return out
}

// checkManagementPorts refuses a forward that takes one of the box's own ports: its
// destination NAT runs before the box's input chain, so SSH or the status page would
// silently go to a LAN host instead. The port number is refused on either protocol, so
// that what the box serves never depends on which protocol a forward names.
func (c *Config) checkManagementPorts(v *validator) {
	mgmt := c.managementPorts()
	for _, f := range c.forwardedPorts() {
		for _, m := range mgmt {
			if !f.r.Overlaps(m.port.Range()) {
				continue
			}
			if f.r.Lo == f.r.Hi {
				v.errf(f.field, "port %d is the box's own %s: forwarding it to %s would take it away from the box; use another port", m.port, m.what, f.to)
			} else {
				v.errf(f.field, "ports %s take %d, the box's own %s: forwarding them to %s would take it away from the box; use other ports", f.r, m.port, m.what, f.to)
			}
			break
		}
	}
	ssh := c.Admin.SSHPort
	for _, w := range c.Admin.WebPorts {
		if ssh != 0 && w == ssh {
			v.errf("admin.web_ports", "port %d is the box's SSH port (admin.ssh_port): the web pages and SSH cannot share it", w)
		}
	}
	if !c.Web.portUnset && ssh != 0 && c.Web.Port == ssh {
		v.errf("web.port", "port %d is the box's SSH port (admin.ssh_port): the status page and SSH cannot share it", ssh)
	}
	if ssh != 0 && c.Web.HTTPSPort == ssh {
		v.errf("web.https_port", "port %d is the box's SSH port (admin.ssh_port): the status page and SSH cannot share it", ssh)
	}
}
