// The Clock line: whether the box's clock is trusted yet, its offset and last sync, from /api/clock.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  function render(v) {
    const line = $("clock-state");
    if (!v.on) {
      line.className = "sub";
      line.textContent = "The clock part is not running.";
      return;
    }
    line.className = v.trusted ? "sub" : "msg err";
    let text = (v.trusted ? "Trusted: " : "NOT TRUSTED: ") + v.why + ".";
    if (v.last_sync) {
      text += " Last sync " + window.applianceTime(v.last_sync) + " with " + v.server +
        " (stratum " + v.stratum + "), offset " + (v.offset_ns / 1e6).toFixed(1) + " ms" +
        (v.set_clock ? "" : " (kept by the box; the system clock is not set)") + ".";
    }
    if (v.error) text += " Last attempt failed: " + v.error;
    line.textContent = text;
    $("clock-now").textContent = window.applianceTime(v.now);
  }
  async function refresh() {
    try {
      const r = await fetch("/api/clock", { credentials: "same-origin" });
      if (r.ok) render(await r.json());
    } catch (e) { /* the next refresh will tell */ }
  }
  refresh();
  setInterval(refresh, 10000);
})();
