// The status page: renders /api/status and follows /api/events (server-sent events).
// Every value is put in the page with textContent: event messages can carry text an
// attacker chose (a SIP user agent), and must never become markup.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let csrf = "";
  let leds = [];
  let last = null;

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k == null ? "" : String(k)));
    return e;
  }
  function fill(tbody, rows) { tbody.replaceChildren(...rows); }
  function t(s) {
    if (!s || s.startsWith("0001-")) return "";
    const d = new Date(s);
    return d.toLocaleString();
  }
  function ago(s) {
    if (!s || s.startsWith("0001-")) return "";
    const sec = Math.round((Date.now() - new Date(s)) / 1000);
    if (sec < 60) return sec + " s ago";
    if (sec < 3600) return Math.round(sec / 60) + " min ago";
    return Math.round(sec / 3600) + " h ago";
  }

  function spark(history) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 360 48");
    svg.setAttribute("preserveAspectRatio", "none");
    if (!history || history.length === 0) return svg;
    const now = Date.now();
    const x = (ts) => 360 - Math.max(0, Math.min(360, (now - new Date(ts)) / 10000));
    const maxR = Math.max(10, ...history.map((h) => h.rtt_ms));
    let d = "";
    history.forEach((h, i) => { d += (i ? "L" : "M") + x(h.t).toFixed(1) + " " + (46 - 44 * h.rtt_ms / maxR).toFixed(1); });
    const p = document.createElementNS(ns, "path");
    p.setAttribute("class", "rtt"); p.setAttribute("d", d);
    for (const h of history) {
      if (h.loss_pct <= 0) continue;
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("class", "loss"); r.setAttribute("x", x(h.t) - 1); r.setAttribute("width", 2);
      r.setAttribute("y", 48 - 48 * h.loss_pct / 100); r.setAttribute("height", 48 * h.loss_pct / 100);
      svg.append(r);
    }
    svg.append(p);
    const title = document.createElementNS(ns, "title");
    title.textContent = "round trip (line, max " + maxR.toFixed(0) + " ms) and loss (red bars), last hour";
    svg.append(title);
    return svg;
  }

  const modeText = { backup: "backup forced by hand", primary: "fixed line forced by hand", off: "failover is off" };

  function render(s) {
    last = s;
    document.title = s.site + " · office edge box";
    $("site").textContent = s.site;
    $("version").textContent = "firmware " + s.version + " (" + s.build_time + ")";
    const au = $("active-uplink");
    au.textContent = s.active_uplink || (s.mode === "off" ? "—" : "no uplink");
    au.className = "big" + (s.active_uplink || s.mode === "off" ? "" : " down");
    $("mode").textContent = modeText[s.mode] || "automatic failover";

    leds = s.leds || [];
    $("leds").replaceChildren(...leds.map((l) => el("div", { class: "led led-" + l.name, id: "led-" + l.name, title: l.means },
      el("div", { class: "lamp" }), l.name, el("div", { class: "pat" }, l.pattern))));
    tickLEDs();

    $("uplinks").replaceChildren(...(s.uplinks || []).map((u) => el("div", { class: "uplink" + (u.active ? " active" : ""), id: "uplink-" + u.role },
      el("div", { class: "row" }, el("strong", {}, u.name), " (" + u.role + ", " + u.interface + ") ",
        el("span", { class: "state " + u.state }, u.state), u.active ? " carrying traffic" : ""),
      el("div", { class: "sub" }, "RTT " + (u.rtt_ms || 0).toFixed(1) + " ms · loss " + (u.loss_pct || 0).toFixed(1) + " % " + (u.since ? "· since " + ago(u.since) : "")),
      u.reason ? el("div", { class: "sub" }, u.reason) : "",
      el("div", { class: "sub" }, (u.targets || []).map((x) => x.target + " " + x.loss_pct + "% lost" + (x.last_error ? " (" + x.last_error + ")" : "")).join(" · ")),
      spark(u.history))));

    fill($("trunks"), (s.trunks.length ? s.trunks : []).map((tr) => el("tr", {},
      el("td", {}, tr.name), el("td", {}, el("span", { class: "state " + tr.state }, tr.state)), el("td", {}, ago(tr.since)), el("td", {}, tr.message))));
    if (!s.trunks.length) fill($("trunks"), [el("tr", {}, el("td", { colspan: 4, class: "sub" }, "no trunk health reported yet"))]);
    const reg = s.registration;
    if (reg) {
      $("pbx-registration").textContent = reg.warning || ("The PBX registers every " + Math.round(reg.interval_ns / 1e9) +
        " s or less with " + reg.registrar + ": after a failover, inbound calls reach the office again within that.");
      $("pbx-registration").className = reg.warning ? "sev-warn" : "sub";
    }

    const we = s.wan_events || [];
    fill($("wan-events"), we.map((e) => el("tr", {}, el("td", {}, t(e.time)), el("td", { class: "sev-" + e.severity }, e.message || e.kind))));
    if (!we.length) fill($("wan-events"), [el("tr", {}, el("td", { colspan: 2, class: "sub" }, s.mode === "off" ? "failover (wan) is off" : "no failover since the box started"))]);

    renderAlerts(s);
    renderBlocklist(s);

    $("checklist").replaceChildren(...s.checklist.map((c) => el("li", { id: "check-" + c.id },
      el("span", { class: "state " + c.result }, c.result), " ", el("strong", {}, c.title), " — ", c.detail,
      c.fix ? el("div", { class: "fix" }, "What to do: " + c.fix) : "")));

    fill($("events"), s.events.map((e) => el("tr", {},
      el("td", {}, t(e.time)), el("td", { class: "sev-" + e.severity }, e.severity), el("td", {}, e.kind), el("td", {}, e.message))));

    const fw = s.firewall;
    $("fw-summary").textContent = fw.loaded ? fw.table + ": " + fw.rules + " rules" : "firewall NOT loaded " + (fw.error || "");
    fill($("rules"), (fw.hits || []).map((h) => el("tr", {},
      el("td", {}, h.chain), el("td", {}, h.comment), el("td", { class: "num" }, h.packets.toLocaleString()), el("td", { class: "num" }, h.bytes.toLocaleString()))));

    for (const b of document.querySelectorAll("button.sim")) b.classList.toggle("hidden", s.board !== "sim");
    renderTLS(s.tls);
  }

  // The certificate's fingerprint, to compare with what the browser shows for this page.
  function renderTLS(c) {
    if (!c) { $("tls").textContent = ""; return; }
    $("tls").textContent = "HTTPS certificate " + (c.self_signed ? "(self-signed by the box) " : "") +
      "SHA-256 " + c.fingerprint_sha256 + (c.error ? " — " + c.error : "");
  }

  function renderAlerts(s) {
    const list = s.alerts || [];
    $("alerts-count").textContent = s.alerts_unacked ? "(" + s.alerts_unacked + " not acknowledged)" : "";
    fill($("alerts"), list.map((a) => el("tr", { class: a.acked ? "" : "unacked" },
      el("td", {}, ago(a.since)), el("td", {}, a.key), el("td", {}, a.source), el("td", {}, a.message),
      el("td", { class: "num" }, a.count),
      el("td", {}, el("span", { class: "state " + (a.active ? "fail" : "ok") }, a.active ? "active" : "over"), a.acked ? " acknowledged" : ""))));
    if (!list.length) fill($("alerts"), [el("tr", {}, el("td", { colspan: 6, class: "sub" }, "nothing needs a person"))]);
  }

  function renderBlocklist(s) {
    const bl = s.blocklist, k = bl.kernel;
    $("blocked-count").textContent = "(" + bl.total + (bl.total > bl.entries.length ? ", the newest " + bl.entries.length + " shown" : "") + ")" +
      (bl.error ? " " + bl.error : "");
    $("kernel-summary").textContent = bl.available ? "kernel block sets: " + k.total.toLocaleString() + " element(s) (" +
      k.addrs4.toLocaleString() + " IPv4 and " + k.addrs6.toLocaleString() + " IPv6 addresses, " +
      k.nets4.toLocaleString() + " IPv4 and " + k.nets6.toLocaleString() + " IPv6 networks)" + (bl.repairs ? "; drift repaired " + bl.repairs + " time(s)" : "") : "";
    const g = s.sipguard;
    $("sipguard-summary").textContent = g ? "sipguard: " + g.packets.toLocaleString() + " packets, " + g.sip.toLocaleString() + " SIP messages, " +
      g.findings.toLocaleString() + " findings, " + g.blocks.toLocaleString() + " blocks, " + g.sources.toLocaleString() + " sources tracked" +
      (g.dropped ? ", " + g.dropped.toLocaleString() + " packets missed (capture drops)" : "") : "sipguard is off";
    fill($("blocked"), bl.entries.map((b) => el("tr", {},
      el("td", {}, b.addr),
      el("td", { title: b.claims.map((c) => c.source + (c.by ? " by " + c.by : "")).join("\n") }, b.sources.join(", ")),
      el("td", {}, b.reason + (b.detail ? " (" + b.detail + ")" : "") + (b.offense > 1 ? ", offense " + b.offense : "")),
      el("td", {}, ago(b.since)),
      el("td", {}, b.until ? t(b.until) + (b.remaining ? " (" + b.remaining + " left)" : "") : "until unblocked"),
      el("td", { class: "num" }, b.packets_dropped == null ? "—" : b.packets_dropped.toLocaleString()),
      el("td", {}, b.evidence ? el("a", { href: "/api/evidence?addr=" + encodeURIComponent(b.addr) }, "pcap") : "—"),
      el("td", {}, el("a", { href: b.report_url, target: "_blank" }, "report")),
      el("td", {}, csrf ? unblockButton(b.addr) : ""))));
    if (!bl.entries.length) fill($("blocked"), [el("tr", {}, el("td", { colspan: 9, class: "sub" }, "nothing blocked by hand or by sipguard"))]);
    fill($("feeds"), bl.feeds.map((f) => el("tr", { id: "feed-" + f.name },
      el("td", {}, f.name), el("td", { class: "num" }, f.entries.toLocaleString()), el("td", { class: "num" }, f.refused.toLocaleString()),
      el("td", {}, ago(f.loaded)), el("td", {}, t(f.until)))));
    if (!bl.feeds.length) fill($("feeds"), [el("tr", {}, el("td", { colspan: 5, class: "sub" }, "no community list loaded"))]);
  }

  // The LEDs blink here by the same patterns (steps in ms, from hal) the box uses.
  function tickLEDs() {
    const now = Date.now();
    for (const l of leds) {
      const lamp = document.querySelector("#led-" + l.name + " .lamp");
      if (!lamp) continue;
      let lit = l.pattern === "on";
      if (l.steps && l.steps.length) {
        const period = l.steps.reduce((a, b) => a + b, 0);
        let ph = ((now - new Date(l.since)) % period + period) % period;
        lit = false;
        for (let i = 0; i < l.steps.length; i++) {
          if (ph < l.steps[i]) { lit = i % 2 === 0; break; }
          ph -= l.steps[i];
        }
      }
      lamp.classList.toggle("lit", lit);
    }
  }
  setInterval(tickLEDs, 50);

  function unblockButton(addr) {
    const b = el("button", {}, "unblock");
    b.addEventListener("click", () => act("/api/unblock", { addr }, "block-msg"));
    return b;
  }

  async function act(path, body, msgId) {
    const msg = $(msgId || "action-msg");
    msg.className = "msg"; msg.textContent = "…";
    try {
      const r = await fetch(path, { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body || {}) });
      const j = await r.json().catch(() => ({}));
      if (!r.ok) { msg.className = "msg err"; msg.textContent = j.error || r.statusText; if (r.status === 401) session(); return; }
      msg.textContent = "done: " + Object.entries(j).map(([k, v]) => k + " " + v).join(", ");
    } catch (e) { msg.className = "msg err"; msg.textContent = String(e); }
  }

  function loggedIn(yes) {
    $("login-form").classList.toggle("hidden", yes);
    $("actions").classList.toggle("hidden", !yes);
    $("block-form").classList.toggle("hidden", !yes);
    $("ack").classList.toggle("hidden", !yes);
    if (last) render(last);
  }

  async function session() {
    const r = await fetch("/api/session", { credentials: "same-origin" });
    const j = await r.json();
    csrf = j.csrf || "";
    loggedIn(!!j.logged_in);
    if (!j.password_set) $("login-msg").textContent = "no password set: run `appliance web passwd` on the box";
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = $("login-msg");
    msg.className = "msg"; msg.textContent = "checking…";
    const r = await fetch("/api/login", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ password: $("password").value }) });
    const j = await r.json().catch(() => ({}));
    $("password").value = "";
    if (!r.ok) { msg.className = "msg err"; msg.textContent = j.error || r.statusText; return; }
    msg.textContent = "";
    csrf = j.csrf;
    loggedIn(true);
  });
  $("logout").addEventListener("click", async () => { await act("/api/logout"); csrf = ""; loggedIn(false); });
  for (const id of ["force-backup", "force-primary", "force-auto"]) {
    $(id).addEventListener("click", (ev) => act("/api/uplink/force", { mode: ev.target.dataset.mode }));
  }
  $("ack").addEventListener("click", () => act("/api/alerts/ack"));
  $("press-short").addEventListener("click", () => act("/api/button", { long: false }));
  $("press-long").addEventListener("click", () => act("/api/button", { long: true }));
  $("block-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act("/api/block", { addr: $("block-addr").value, for: $("block-for").value }, "block-msg");
  });

  // The status is fetched at once, so the page shows the box before (and without) its event
  // stream: a stream can be refused (too many open from one address) or slow to start.
  async function refresh() {
    try {
      const r = await fetch("/api/status", { credentials: "same-origin" });
      if (r.ok) render(await r.json());
    } catch (e) { /* the stream or the next refresh will tell */ }
  }

  // connect follows the event stream. A browser retries a dropped stream by itself, but not
  // one that was refused: then the page keeps refreshing the status and tries again.
  let retry = null;
  function connect() {
    const es = new EventSource("/api/events");
    es.addEventListener("status", (ev) => { $("live").textContent = "live"; $("live").className = "live on"; render(JSON.parse(ev.data)); });
    es.onerror = () => {
      $("live").className = "live off";
      if (es.readyState !== EventSource.CLOSED) { $("live").textContent = "reconnecting…"; return; }
      $("live").textContent = "not live (refreshing every 10 s)";
      if (retry) return;
      retry = setTimeout(() => { retry = null; refresh(); connect(); }, 10000);
    };
  }
  refresh();
  session();
  connect();
})();
