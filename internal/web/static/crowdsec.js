// The fleet-sharing card: what the box pulls from and pushes to the CrowdSec Local API it
// shares with other offices, from /api/crowdsec (logged in).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const when = (t) => (t ? window.applianceTime(t) : "never");
  function row(label, value, cls) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = label;
    const td = document.createElement("td");
    td.textContent = value;
    if (cls) td.className = cls;
    tr.append(th, td);
    return tr;
  }
  function render(v) {
    $("crowdsec-card").classList.toggle("hidden", !v.on);
    if (!v.on) return;
    $("crowdsec-state").textContent = "Local API " + v.url;
    const rows = [];
    if (v.pulling) {
      rows.push(row("decisions pulled", v.pull_error ? "failing: " + v.pull_error + " (the last good ones stay)" : "last " + when(v.last_pull), v.pull_error ? "err" : ""));
      rows.push(row("blocked for the fleet", v.decisions + " address(es) and network(s)" + (v.ignored ? ", " + v.ignored + " not for a firewall" : "")));
      if (v.refused && v.refused.length) rows.push(row("refused", v.refused.join("; "), "err"));
    }
    if (v.pushing) {
      rows.push(row("blocks shared", v.pushed + " since start, last " + when(v.last_push) + (v.queued ? ", " + v.queued + " waiting" : "") +
        (v.dropped ? ", " + v.dropped + " lost (queue full)" : ""), v.push_error || v.dropped ? "err" : ""));
      if (v.push_error) rows.push(row("sharing", "failing: " + v.push_error + " (kept on disk and sent later)", "err"));
    }
    $("crowdsec").replaceChildren(...rows);
  }
  async function refresh() {
    try {
      const r = await fetch("/api/crowdsec", { credentials: "same-origin" });
      if (r.ok) render(await r.json());
      else $("crowdsec-card").classList.add("hidden");
    } catch (e) { /* the next refresh will tell */ }
  }
  // Refresh at once when the login form (app.js) shows or hides the actions.
  new MutationObserver(refresh).observe($("actions"), { attributes: true, attributeFilter: ["class"] });
  refresh();
  setInterval(refresh, 10000);
})();
