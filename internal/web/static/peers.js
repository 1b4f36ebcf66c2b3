// The Trusted names card: each host name of a SIP peer or admin with the addresses it
// resolves to now, from /api/peers (logged in).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const { cell } = window.applianceCard;
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
  window.applianceCard.follow("/api/peers", render, 10000);
})();
