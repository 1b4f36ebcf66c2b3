// The Diagnostics card (logged in): ping, traceroute and DNS lookup from the box through a
// chosen uplink, a SIP OPTIONS to a trunk, and a packet capture downloaded as pcapng. Text
// goes in with textContent only.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let csrf = "", loaded = false;
  function option(sel, value, text) {
    const o = document.createElement("option");
    o.value = value; o.textContent = text; sel.appendChild(o);
  }
  function out(text, err) {
    const o = $("diag-out");
    o.textContent = text; o.classList.toggle("err", !!err);
  }
  async function post(path, body) {
    const r = await fetch(path, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body) });
    return r;
  }
  async function run(path, body, show) {
    out("running…");
    $("diag-state").textContent = "running";
    try {
      const r = await post(path, body);
      const j = await r.json().catch(() => ({}));
      if (!r.ok) { out(j.error || r.statusText, true); return; }
      out(show(j), !!j.error);
    } catch (e) { out(String(e), true); }
    finally { $("diag-state").textContent = "done"; }
  }
  function uplink() { return $("diag-uplink").value; }
  function replies(j) {
    const head = `${j.target} (${j.addr}) via ${j.uplink} (${j.interface})`;
    const lines = j.replies.map((r) => r.text);
    const got = j.replies.filter((r) => !r.lost).length;
    return [head, ...lines, `${got} of ${j.replies.length} answered`].concat(j.error ? ["error: " + j.error] : []).join("\n");
  }
  async function load() {
    const r = await fetch("/api/diag", { credentials: "same-origin" });
    if (!r.ok) return;
    const d = await r.json();
    const up = $("diag-uplink"), tr = $("diag-trunk"), ifs = $("diag-iface"), qt = $("diag-qtype");
    for (const s of [up, tr, ifs, qt]) s.replaceChildren();
    for (const u of d.uplinks) option(up, u.role, `${u.name} (${u.interface})`);
    for (const t of d.trunks) option(tr, t.name, `${t.name} (${t.target})`);
    for (const i of d.interfaces) option(ifs, i, i);
    for (const q of d.qtypes) option(qt, q, q);
    $("diag-sip").disabled = d.trunks.length === 0;
    $("diag-seconds").max = d.max_capture_s;
    loaded = true;
  }
  async function session() {
    const r = await fetch("/api/session", { credentials: "same-origin" });
    const j = await r.json();
    csrf = j.csrf || "";
    $("diag-card").classList.toggle("hidden", !j.logged_in);
    if (j.logged_in && !loaded) await load();
  }
  $("diag-ping").addEventListener("click", () =>
    run("/api/diag/ping", { uplink: uplink(), target: $("diag-target").value, count: Number($("diag-count").value) }, replies));
  $("diag-trace").addEventListener("click", () =>
    run("/api/diag/traceroute", { uplink: uplink(), target: $("diag-target").value }, replies));
  $("diag-dns").addEventListener("click", () =>
    run("/api/diag/dns", { uplink: uplink(), target: $("diag-target").value, type: $("diag-qtype").value }, (j) =>
      [`${j.name} ${j.type} via ${j.uplink}: ${j.answer.rcode} from ${j.answer.server} in ${(j.answer.rtt_ns / 1e6).toFixed(1)} ms`,
        ...j.answer.records.map((x) => `${x.name}\t${x.ttl}\t${x.type}\t${x.data}`)].join("\n")));
  $("diag-sip").addEventListener("click", () =>
    run("/api/diag/sip", { uplink: uplink(), trunk: $("diag-trunk").value }, (j) => j.error ? "error: " + j.error : j.text));
  $("diag-capture").addEventListener("click", async () => {
    const iface = $("diag-iface").value, seconds = Number($("diag-seconds").value);
    out(`capturing on ${iface} for ${seconds} s…`);
    $("diag-state").textContent = "capturing";
    try {
      const r = await post("/api/diag/capture", { interface: iface, seconds });
      if (!r.ok) { const j = await r.json().catch(() => ({})); out(j.error || r.statusText, true); return; }
      const blob = await r.blob();
      const name = (r.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
      const a = $("diag-download");
      if (a.href) URL.revokeObjectURL(a.href);
      a.href = URL.createObjectURL(blob);
      a.download = name ? name[1] : "capture.pcapng";
      a.textContent = `download ${a.download}`;
      a.classList.remove("hidden");
      out(`${r.headers.get("X-Capture-Packets")} packets, ${blob.size} bytes` +
        (r.headers.get("X-Capture-Truncated") === "true" ? " (stopped at the size limit)" : ""));
    } catch (e) { out(String(e), true); }
    finally { $("diag-state").textContent = "done"; }
  });
  // The login form is app.js's: follow it through the actions row it shows and hides.
  new MutationObserver(session).observe($("actions"), { attributes: true, attributeFilter: ["class"] });
  session();
})();
