// The Backups panel: each destination's newest verified copy, its size and age, and the
// next run, from /api/backups. Text goes in with textContent only.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  function td(text, cls) { const c = document.createElement("td"); c.textContent = text; if (cls) c.className = cls; return c; }
  function size(n) {
    if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + " GiB";
    if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
    if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KiB";
    return n + " B";
  }
  function age(s) {
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " days";
  }
  function stateCell(cls, text) {
    const c = document.createElement("td"), b = document.createElement("span");
    b.className = "state " + cls; b.textContent = cls === "ok" ? "ok" : cls === "fail" ? "stale" : "wait";
    c.append(b, document.createTextNode(" " + text));
    return c;
  }
  function when(t) { return t ? window.applianceTime(t) : "—"; }
  function render(st) {
    const body = $("backups");
    body.replaceChildren();
    if (!st.enabled) {
      $("backups-summary").textContent = "Backups are off: set [backup] dir, a [[backup.pbx]] and an off-site [[backup.destination]].";
      return;
    }
    let sum = "copy 2 on " + st.dir + " · next run " + when(st.next_run) + " · stale after " + st.max_age;
    if (st.busy) sum += " · now: " + st.busy;
    if (st.waiting) sum += " · waiting: " + st.waiting;
    if (st.endpoint) sum += " · PBXes push to " + st.endpoint;
    $("backups-summary").textContent = sum;
    for (const d of st.destinations || []) {
      const tr = document.createElement("tr");
      const n = d.newest;
      let state = "ok", cls = "ok";
      if (d.stale) { state = "STALE: " + (d.stale_why || ""); cls = "fail"; }
      else if (!n) { state = "no verified copy yet"; cls = "unknown"; }
      if (d.last_error) { state += " · last error: " + d.last_error + (d.next_retry ? " (retry " + when(d.next_retry) + ")" : ""); if (cls === "ok") cls = "unknown"; }
      tr.append(td(d.name), td(d.kind + " " + d.where), td(n ? n.file : "—"), td(n ? when(n.verified) : "—"),
        td(n ? size(n.size) : "—", "num"), td(n ? age(d.age_seconds) : "—", "num"), td(String(d.copies), "num"), stateCell(cls, state));
      body.append(tr);
    }
    const pbx = (st.pbx || []).map((p) => p.name + " (" + p.mode + (p.last_pull ? ", last pull " + p.last_pull : "") + ")");
    $("backups-pbx").textContent = pbx.length ? "PBX backups received from: " + pbx.join(", ") : "no PBX configured under [[backup.pbx]]";
  }
  async function load() {
    try {
      const r = await fetch("/api/backups", { cache: "no-store" });
      if (r.ok) render(await r.json());
    } catch (e) { $("backups-summary").textContent = "backups: " + e; }
  }
  document.addEventListener("DOMContentLoaded", () => { load(); setInterval(load, 15000); });
})();
