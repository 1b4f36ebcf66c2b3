// The Trusted names card: each host name of a SIP peer or admin with the addresses it
// resolves to now, from /api/peers (logged in).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  function render(list) {
    const card = $("peers-card"), body = $("peers");
    card.classList.toggle("hidden", list.length === 0);
    body.replaceChildren();
    for (const n of list) {
      const tr = document.createElement("tr");
      cell(tr, n.host);
      cell(tr, n.key.replace(/^sip_peers\./, "SIP peer "));
      cell(tr, (n.addrs || []).join(", ") || "none");
      cell(tr, n.resolved ? window.applianceTime(n.resolved) : "never");
      cell(tr, n.error ? "lookup failing: " + n.error : "ok", n.error ? "err" : "");
      body.appendChild(tr);
    }
  }
  async function refresh() {
    try {
      const r = await fetch("/api/peers", { credentials: "same-origin" });
      if (r.ok) render(await r.json());
    } catch (e) { /* the next refresh will tell */ }
  }
  refresh();
  setInterval(refresh, 10000);
})();
