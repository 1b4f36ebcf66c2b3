// The VPN card: the box's WireGuard door for remote phones, each peer's handshake and
// traffic, and its config file and QR code (behind login), from /api/vpn.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function bytes(n) {
    const u = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  function ago(t) {
    if (!t) return "never";
    const s = Math.round((Date.now() - new Date(t)) / 1000);
    if (s < 120) return s + " s ago";
    if (s < 7200) return Math.round(s / 60) + " min ago";
    return window.applianceTime(t);
  }
  function showQR(name) {
    const box = $("vpn-qr");
    const img = document.createElement("img");
    img.src = "/api/vpn/peer/" + encodeURIComponent(name) + "/qr.png";
    img.alt = "WireGuard config of " + name;
    const cap = document.createElement("div");
    cap.className = "sub";
    cap.textContent = "Scan with the WireGuard app (" + name + "). It holds the phone's private key: close it when done.";
    const close = document.createElement("button");
    close.textContent = "Close";
    close.onclick = () => { box.replaceChildren(); box.classList.add("hidden"); };
    box.replaceChildren(img, cap, close);
    box.classList.remove("hidden");
  }
  function render(v) {
    const card = $("vpn-card");
    card.classList.toggle("hidden", !v.enabled);
    if (!v.enabled) return;
    const st = v.vpn;
    const state = $("vpn-state");
    state.className = st.error ? "msg err" : "sub";
    state.textContent = (st.error ? st.error + ". " : "") +
      "WireGuard on " + st.interface + " (" + (st.implementation || "not running") + "), " + st.address +
      ", phones dial " + st.endpoint + ". Box public key " + st.public_key;
    $("vpn-peers").replaceChildren(...(st.peers || []).map((p) => {
      const tr = document.createElement("tr");
      cell(tr, p.name);
      cell(tr, p.address);
      cell(tr, p.endpoint || "not connected");
      const hs = p.last_handshake ? (Date.now() - new Date(p.last_handshake)) / 1000 : Infinity;
      cell(tr, ago(p.last_handshake), hs > 180 ? "sev-warn" : "");
      cell(tr, bytes(p.rx_bytes) + " / " + bytes(p.tx_bytes));
      cell(tr, (p.reach || []).join(", "));
      const td = cell(tr, "");
      const a = document.createElement("a");
      a.href = "/api/vpn/peer/" + encodeURIComponent(p.name) + ".conf";
      a.download = p.name + ".conf";
      a.textContent = "config";
      const q = document.createElement("button");
      q.textContent = "QR code";
      q.onclick = () => showQR(p.name);
      td.append(a, " ", q);
      if (!p.key_by_box) td.title = "The phone keeps its own private key: add it to the config on the phone.";
      return tr;
    }));
  }
  async function refresh() {
    try {
      const r = await fetch("/api/vpn", { credentials: "same-origin" });
      if (r.ok) render(await r.json());
      else if (r.status === 401) $("vpn-card").classList.add("hidden");
    } catch (e) { /* the next refresh will tell */ }
  }
  // The login form is app.js's: refresh as soon as its actions row shows or hides.
  new MutationObserver(refresh).observe($("actions"), { attributes: true, attributeFilter: ["class"] });
  refresh();
  setInterval(refresh, 10000);
})();
