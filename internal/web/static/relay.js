// The relay card: where the office's voice goes (through the relay or direct), the tunnel
// over each line (probes answered, round trip, loss, bytes) and the address the trunk
// provider must allow, from /api/relay.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const { cell, bytes } = window.applianceCard;
  function render(v) {
    const card = $("relay-card");
    card.classList.toggle("hidden", !v.enabled);
    if (!v.enabled) return;
    const st = v.relay;
    const direct = st.using !== "relay";
    const state = $("relay-state");
    state.className = direct ? "msg err" : "sub";
    state.textContent = (direct
      ? "Voice goes DIRECT: the relay answers on no line, calls leave from the lines' own addresses. "
      : "Voice goes through the relay " + st.endpoint + " over " + (st.line || "-") + (st.voice_moved ? " (moved off a flooded line)" : "") + ". ") +
      "The trunk provider must allow " + st.public_address + ". " +
      (st.duplicate ? "Every tunnel packet goes over both lines (" + bytes(st.duplicate_bytes) + " extra, " +
        bytes(Math.round(st.duplicate_bytes_per_call_minute)) + " per call-minute). " : "") +
      "Box public key " + st.box_public_key + (st.error ? ". " + st.error : "");
    $("relay-lines").replaceChildren(...(st.lines || []).map((l) => {
      const tr = document.createElement("tr");
      cell(tr, l.Name + (l.Current ? " (carries the tunnel)" : ""));
      cell(tr, l.Reachable ? "answers" : "no answer", l.Reachable ? "" : "sev-warn");
      cell(tr, l.ProbesAnswered ? (l.RTT / 1e6).toFixed(1) + " ms" : "-");
      cell(tr, Math.round(l.Loss * 100) + " %");
      cell(tr, bytes(l.BytesIn) + " / " + bytes(l.BytesOut) + (l.DuplicateBytesOut ? " (" + bytes(l.DuplicateBytesOut) + " duplicate)" : ""));
      return tr;
    }));
  }
  window.applianceCard.follow("/api/relay", render, 5000, "relay-card");
})();
