// The VPN card: the box's WireGuard door for remote phones, each peer's handshake and
// traffic, and its config file and QR code (behind login), from /api/vpn.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const { cell, bytes } = window.applianceCard;
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
    // The query only keeps the browser from showing a QR code it had before a rotation.
    img.src = "/api/vpn/peer/" + encodeURIComponent(name) + "/qr.png?t=" + Date.now();
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
  // rotate gives the peer a new key pair, on a second click (the phone's config stops
  // working at once), and shows the new config's QR code.
  async function rotate(btn, name) {
    const msg = $("vpn-msg");
    if (!btn.dataset.armed) {
      btn.dataset.armed = "1";
      btn.textContent = "Confirm: the old config stops working";
      return;
    }
    btn.disabled = true;
    msg.className = "msg"; msg.textContent = "making a new key for " + name + "…";
    try {
      const s = await (await fetch("/api/session", { credentials: "same-origin" })).json();
      const r = await fetch("/api/vpn/peer/" + encodeURIComponent(name) + "/rotate", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": s.csrf || "" }, body: "{}" });
      const j = await r.json().catch(() => ({}));
      if (!r.ok) { msg.className = "msg err"; msg.textContent = j.error || r.statusText; return; }
      msg.textContent = name + " has a new key (" + j.public_key + "): its old config no longer connects. Import the new one on the phone.";
      showQR(name);
      refresh();
    } catch (e) { msg.className = "msg err"; msg.textContent = String(e); }
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
      if (p.key_by_box) {
        const rb = document.createElement("button");
        rb.textContent = "Rotate key";
        rb.className = "vpn-rotate";
        rb.onclick = () => rotate(rb, p.name);
        td.append(" ", rb);
      } else td.title = "The phone keeps its own private key: add it to the config on the phone. To change it, put the phone's new public key in the config's public_key.";
      return tr;
    }));
  }
  // rotate fetches again at once after a new key.
  const refresh = window.applianceCard.follow("/api/vpn", render, 10000, "vpn-card");
})();
