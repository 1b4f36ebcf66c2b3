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

  // What the cards' scripts (peers.js, calls.js, relay.js, vpn.js: deferred after this one)
  // share. Set before anything here can fail, so a card still works if the status does not.
  window.applianceCard = {
    // cell appends a cell with text (never markup) and an optional class to tr, and returns it.
    cell(tr, text, cls) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
      return td;
    },
    // bytes writes a byte count in decimal units (kB, MB…).
    bytes(n) {
      const u = ["B", "kB", "MB", "GB", "TB"];
      let i = 0;
      while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
      return (i ? n.toFixed(1) : n) + " " + u[i];
    },
    // follow gives path's JSON to render now and every `every` ms, and returns the function
    // that fetches it again. With a card (its element id) the path is behind login: a 401
    // hides the card, and logging in or out (this script's actions row showing or hiding)
    // fetches at once.
    follow(path, render, every, card) {
      async function refresh() {
        try {
          const r = await fetch(path, { credentials: "same-origin" });
          if (r.ok) render(await r.json());
          else if (card && r.status === 401) $(card).classList.add("hidden");
        } catch (e) { /* the next refresh will tell */ }
      }
      if (card) new MutationObserver(refresh).observe($("actions"), { attributes: true, attributeFilter: ["class"] });
      refresh();
      setInterval(refresh, every);
      return refresh;
    },
  };

  // Times are written in the site's zone ([site] timezone, sent with every status), each
  // labelled with it, whatever the browser's own zone is. A browser that does not know the
  // zone's name gets the offset the box sent.
  let zone = { name: "UTC", abbrev: "UTC", offset_s: 0 };
  let fmt = null;
  function setZone(z) {
    if (!z || (fmt && z.name === zone.name)) return;
    zone = z;
    const opts = { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
      hourCycle: "h23", timeZoneName: "short" };
    try { fmt = new Intl.DateTimeFormat("en-CA", Object.assign({ timeZone: z.name }, opts)); } catch (e) { fmt = null; }
    window.applianceZone = zone;
  }
  function t(s) {
    if (!s || s.startsWith("0001-")) return "";
    const d = new Date(s);
    if (fmt) return fmt.format(d).replace(",", "");
    const local = new Date(d.getTime() + zone.offset_s * 1000).toISOString().replace("T", " ").slice(0, 19);
    return local + " " + zone.abbrev;
  }
  window.applianceTime = t; // for the other scripts of the page
  function dur(sec) {
    sec = Math.max(0, Math.round(sec));
    if (sec < 60) return sec + " s";
    if (sec < 3600) return Math.floor(sec / 60) + " min " + (sec % 60) + " s";
    return Math.floor(sec / 3600) + " h " + Math.floor(sec % 3600 / 60) + " min";
  }
  function ago(s) {
    if (!s || s.startsWith("0001-")) return "";
    const sec = Math.round((Date.now() - new Date(s)) / 1000);
    if (sec < 60) return sec + " s ago";
    if (sec < 3600) return Math.round(sec / 60) + " min ago";
    return Math.round(sec / 3600) + " h ago";
  }

  const modeText = { backup: "backup forced by hand", primary: "fixed line forced by hand", off: "failover is off" };
  const modeButton = { backup: "force-backup", primary: "force-primary", auto: "force-auto" };
  const modeName = { backup: "modem (backup) forced", primary: "fixed line forced", auto: "automatic failover", off: "failover is off" };
  let skew = 0; // the box's clock minus the browser's, for countdowns

  function render(s) {
    last = s;
    setZone(s.zone);
    skew = new Date(s.time) - Date.now();
    document.title = s.site + " · office edge box";
    $("site").textContent = s.site;
    $("version").textContent = "firmware " + s.version + " (" + s.build_time + ") · times in " + zone.name;
    const au = $("active-uplink");
    au.textContent = s.active_uplink || (s.mode === "off" ? "—" : "no uplink");
    au.className = "big" + (s.active_uplink || s.mode === "off" ? "" : " down");
    $("mode").textContent = modeText[s.mode] || "automatic failover";
    renderMode(s);
    tickFailback();

    leds = s.leds || [];
    $("leds").replaceChildren(...leds.map((l) => el("div", { class: "led led-" + l.name, id: "led-" + l.name },
      el("div", { class: "lamp" }),
      el("div", { class: "led-text" }, el("strong", {}, l.name), " ", el("span", { class: "pat" }, l.pattern),
        el("div", { class: "means" }, l.means || ""), l.do && l.do !== "Nothing." ? el("div", { class: "means do" }, "What to do: " + l.do) : ""))));
    tickLEDs();

    $("uplinks").replaceChildren(...(s.uplinks || []).map((u) => el("div", { class: "uplink" + (u.active ? " active" : ""), id: "uplink-" + u.role },
      el("div", { class: "row" }, el("strong", {}, u.name), " (" + u.role + ", " + u.interface + ") ",
        el("span", { class: "state " + u.state }, u.state), u.active ? " carrying traffic" : ""),
      el("div", { class: "sub" }, "RTT " + (u.rtt_ms || 0).toFixed(1) + " ms · loss " + (u.loss_pct || 0).toFixed(1) + " % " + (u.since ? "· since " + ago(u.since) : "")),
      u.reason ? el("div", { class: "sub" }, u.reason) : "",
      el("div", { class: "sub" }, (u.targets || []).map((x) => x.target + " " + x.loss_pct + "% lost" + (x.last_error ? " (" + x.last_error + ")" : "")).join(" · ")))));

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
      el("span", { class: "state " + c.result }, c.result === "warn" ? "warning" : c.result), " ", el("strong", {}, c.title), " — ", c.detail,
      c.fix ? el("div", { class: "fix" }, "What to do: " + c.fix) : "")));

    fill($("events"), s.events.map((e) => el("tr", {},
      el("td", {}, t(e.time)), el("td", { class: "sev-" + e.severity }, e.severity), el("td", {}, e.kind), el("td", {}, e.message))));

    renderFirewall(s.firewall);
    renderDropped(s.firewall);

    for (const b of document.querySelectorAll("button.sim")) b.classList.toggle("hidden", s.board !== "sim");
    renderTLS(s.tls);
  }

  // The certificate's fingerprint, to compare with what the browser shows for this page.
  function renderTLS(c) {
    if (!c) { $("tls").textContent = ""; return; }
    $("tls").textContent = "HTTPS certificate " + (c.self_signed ? "(self-signed by the box) " : "") +
      "SHA-256 " + c.fingerprint_sha256 + (c.error ? " — " + c.error : "");
  }

  // The force buttons say which mode is in force now.
  function renderMode(s) {
    $("mode-now").textContent = "Uplink mode now: " + (modeName[s.mode] || s.mode);
    for (const [mode, id] of Object.entries(modeButton)) {
      const b = $(id), on = s.mode === mode;
      b.classList.toggle("current", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
      b.textContent = b.dataset.label + (on ? " (now)" : "");
    }
  }

  // The countdown to the return to the fixed line, as `appliance wan status` shows it.
  function tickFailback() {
    const f = $("failback");
    if (!last || !last.failback_at || last.failback_at.startsWith("0001-")) { f.textContent = ""; return; }
    const left = (new Date(last.failback_at) - (Date.now() + skew)) / 1000;
    f.textContent = left > 0 ? "back to the fixed line in " + dur(left) + " (at " + t(last.failback_at) + ") if it stays healthy"
      : "returning to the fixed line…";
  }
  setInterval(tickFailback, 1000);

  // Each alert: what happened, since when, what to do; acknowledged ones are greyed.
  function renderAlerts(s) {
    const list = s.alerts || [];
    $("alerts-count").textContent = s.alerts_unacked ? "(" + s.alerts_unacked + " not acknowledged)" : "";
    const led = (s.leds || []).find((l) => l.name === "alert");
    $("alert-led").textContent = led ? "Alert LED: " + (led.looks || led.pattern) + " — " + led.means : "";
    $("alerts").replaceChildren(...list.map((a) => el("div", { class: "alert" + (a.acked ? " acked" : " unacked"), id: "alert-" + a.key },
      el("div", { class: "alert-head" },
        el("span", { class: "state " + (a.active ? "fail" : "ok") }, a.active ? "active" : "over"), " ",
        el("strong", {}, a.key), " from " + a.source + " · since " + t(a.since) + " (" + ago(a.since) + ")" +
          (a.count > 1 ? " · " + a.count + " times, last " + ago(a.last) : "") +
          (a.resolved ? " · over since " + t(a.resolved) : "") + (a.acked ? " · acknowledged" : " · not acknowledged")),
      el("div", { class: "alert-msg" }, a.message),
      el("div", { class: "fix" }, "What to do: " + a.advice))));
    if (!list.length) $("alerts").replaceChildren(el("div", { class: "sub" }, "nothing needs a person"));
  }

  // The firewall by chain, each rule's purpose in words with its counters; the nft text is
  // one click away.
  function renderFirewall(fw) {
    $("fw-summary").textContent = fw.loaded ? fw.table + ": " + fw.rules + " rules in " + (fw.chains || []).length + " chains" +
      (fw.error ? " (" + fw.error + ")" : "") : "firewall NOT loaded " + (fw.error || "");
    const open = {};
    for (const d of $("fw-chains").querySelectorAll("details[data-chain]")) open[d.dataset.chain] = d.open;
    const openNFT = new Set([...$("fw-chains").querySelectorAll("details.nft[open]")].map((d) => d.dataset.key));
    $("fw-chains").replaceChildren(...(fw.chains || []).map((c) => {
      const d = el("details", { class: "chain", "data-chain": c.name, id: "chain-" + c.name },
        el("summary", {}, el("strong", {}, c.name), " — " + c.words + " · " + c.packets.toLocaleString() + " packets"),
        el("ul", { class: "rules" }, ...c.groups.map((g) => {
          const key = c.name + "/" + g.comment;
          const nft = el("details", { class: "nft", "data-key": key }, el("summary", {}, "nft (" + g.nft.length + " rule" + (g.nft.length === 1 ? "" : "s") + ")"),
            g.words.length > 1 ? el("ul", {}, ...g.words.map((w) => el("li", {}, w))) : "",
            el("pre", {}, g.nft.join("\n")));
          nft.open = openNFT.has(key);
          return el("li", { class: g.packets ? "hit" : "" },
            el("span", { class: "words" }, g.sentence),
            ": ", el("strong", {}, g.packets.toLocaleString() + " packets"), " (" + bytes(g.bytes) + ")", nft);
        })));
      d.open = c.name in open ? open[c.name] : c.groups.length <= 16;
      return d;
    }));
  }
  function bytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
    if (n < 1 << 30) return (n / (1 << 20)).toFixed(1) + " MiB";
    return (n / (1 << 30)).toFixed(1) + " GiB";
  }

  // Who was turned away, in the window chosen.
  let dropWindow = "hour";
  function renderDropped(fw) {
    const w = (fw.dropped || []).find((x) => x.window === dropWindow);
    for (const b of document.querySelectorAll("#dropped-card button[data-window]")) b.classList.toggle("current", b.dataset.window === dropWindow);
    const rows = (list, empty) => (list && list.length ? list : null) ?
      list.map((x) => el("tr", {}, el("td", {}, x.key), el("td", { class: "num" }, x.packets.toLocaleString()))) :
      [el("tr", {}, el("td", { colspan: 2, class: "sub" }, empty))];
    $("dropped-summary").textContent = !w ? "not counted (the firewall is not loaded, or from before this view)" :
      w.sources_seen.toLocaleString() + " source(s) dropped in the last " + dropWindow + (w.full ? "; the count is full: new sources are not listed" : "");
    fill($("dropped-sources"), rows(w && w.sources, "nobody"));
    fill($("dropped-tcp"), rows(w && w.tcp, "none"));
    fill($("dropped-udp"), rows(w && w.udp, "none"));
  }
  for (const b of document.querySelectorAll("#dropped-card button[data-window]")) {
    b.addEventListener("click", () => { dropWindow = b.dataset.window; if (last) renderDropped(last.firewall); });
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
      (g.dropped ? ", " + g.dropped.toLocaleString() + " packets missed (capture drops)" : "") +
      detections(g.detections) : "sipguard is off";
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

  // The detectors that found something, most first: "; found: 3 scanner, 1 brute-force".
  function detections(d) {
    const found = Object.entries(d || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
    return found.length ? "; found: " + found.map(([k, n]) => n.toLocaleString() + " " + k).join(", ") : "";
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
    $(id).dataset.label = $(id).textContent;
    $(id).addEventListener("click", (ev) => act("/api/uplink/force", { mode: ev.target.dataset.mode }));
  }
  $("ack").addEventListener("click", async () => { await act("/api/alerts/ack", {}, "ack-msg"); refresh(); });
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
