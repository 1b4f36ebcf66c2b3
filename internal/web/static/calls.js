// The calls card: each call now with both directions' loss, jitter and estimated MOS, and
// the last 24 h with each call's worst minute, from /api/calls (behind login: numbers called).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const { cell } = window.applianceCard;
  function flow(f) {
    if (!f || !f.packets) return "no media";
    return f.loss_pct.toFixed(1) + " % loss, " + f.jitter_ms.toFixed(1) + " ms jitter, MOS " + f.mos.toFixed(2);
  }
  function mosClass(m, limit) { return m && m < limit ? "sev-warn" : ""; }
  function worst(w) {
    if (!w) return "-";
    return w.mos.toFixed(2) + " at " + window.applianceTime(w.start) + " (" + w.loss_pct.toFixed(1) + " % loss, " +
      w.jitter_ms.toFixed(1) + " ms, " + (w.direction === "to_pbx" ? "to the PBX" : "from the PBX") + ")";
  }
  function who(c) { return c.extension + (c.direction === "inbound" ? " ← " : " → ") + c.remote; }
  function flags(c) {
    const f = [];
    if (c.one_way) f.push("one-way audio");
    if (c.poor) f.push("poor");
    if (c.hold) f.push("on hold");
    return f.join(", ");
  }
  function render(v) {
    const card = $("calls-card");
    card.classList.toggle("hidden", !v.enabled);
    if (!v.enabled) return;
    const st = v.calls, limit = st.mos_alert || 0;
    $("calls-state").textContent = st.active.length + " call(s) now; since start " + st.counters.calls + " calls, " +
      st.counters.one_way + " with one-way audio, " + st.counters.poor + " poor (MOS below " + limit + ")" +
      (st.counters.untracked ? "; " + st.counters.untracked + " not followed (table full)" : "");
    $("calls-now").replaceChildren(...st.active.map((c) => {
      const tr = document.createElement("tr");
      cell(tr, who(c));
      cell(tr, c.line || "-");
      cell(tr, c.codec || "-");
      cell(tr, window.applianceTime(c.answered));
      cell(tr, flow(c.to_pbx), mosClass(c.to_pbx.mos, limit));
      cell(tr, flow(c.from_pbx), mosClass(c.from_pbx.mos, limit));
      cell(tr, c.mos ? c.mos.toFixed(2) : "-", mosClass(c.mos, limit));
      cell(tr, flags(c), c.one_way || c.poor ? "sev-warn" : "");
      return tr;
    }));
    $("calls-recent").replaceChildren(...st.recent.slice(0, 200).map((c) => {
      const tr = document.createElement("tr");
      cell(tr, who(c));
      cell(tr, c.line || "-");
      cell(tr, window.applianceTime(c.answered) + " – " + window.applianceTime(c.ended));
      cell(tr, c.mos ? c.mos.toFixed(2) : "-", mosClass(c.mos, limit));
      cell(tr, worst(c.worst_minute), mosClass(c.worst_minute && c.worst_minute.mos, limit));
      cell(tr, flags(c), c.one_way || c.poor ? "sev-warn" : "");
      return tr;
    }));
  }
  window.applianceCard.follow("/api/calls", render, 5000, "calls-card");
})();
