// The Leases panel: the DHCP server's state and the addresses it gave, from /api/leases.
// Values go in with textContent only: host names are chosen by the devices themselves.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text == null ? "" : String(text);
    return td;
  }
  function expiry(l) {
    if (!l.expiry) return l.static ? "not seen yet" : "";
    const d = new Date(l.expiry);
    const left = Math.round((d - Date.now()) / 60000);
    if (left <= 0) return "ended " + window.applianceTime(l.expiry);
    return window.applianceTime(l.expiry) + (left < 120 ? " (in " + left + " min)" : "");
  }
  function render(v) {
    const state = $("dhcp-state");
    if (!v.on) {
      state.className = "sub";
      state.textContent = "The DHCP server is off ([dhcp] enabled = false): devices get their addresses elsewhere.";
    } else {
      state.className = v.serving ? "sub" : "msg err";
      state.textContent = v.message;
    }
    $("leases-count").textContent = v.leases.length ? "(" + v.leases.length + ")" : "";
    $("leases").replaceChildren(...v.leases.map((l) => {
      const tr = document.createElement("tr");
      tr.append(cell(l.ip), cell(l.mac), cell(l.hostname), cell(l.static ? "static" : "pool"), cell(expiry(l)));
      return tr;
    }));
  }
  async function refresh() {
    try {
      const r = await fetch("/api/leases", { credentials: "same-origin" });
      if (r.ok) render(await r.json());
    } catch (e) { /* the next refresh will tell */ }
  }
  refresh();
  setInterval(refresh, 10000);
})();
