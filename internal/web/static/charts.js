// The History and Data budget panels: charts of /api/history drawn with uPlot (served from
// the box), with the failovers marked, and each capped uplink's data use from /api/budget.
// Values go in with textContent only.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const spans = { "15m": 900, "1h": 3600, "24h": 86400, "7d": 7 * 86400 };
  // Each chart: the series it draws (patterns as /api/history takes them), its unit and how
  // a value is written on its axis.
  const specs = [
    { id: "chart-rtt", title: "Round trip per uplink", pats: ["uplink/*/rtt_ms"], unit: "ms", fmt: (v) => v.toFixed(v < 10 ? 1 : 0) + " ms" },
    { id: "chart-loss", title: "Loss per uplink", pats: ["uplink/*/loss_pct"], unit: "%", fmt: (v) => v.toFixed(0) + " %", range: [0, 100] },
    { id: "chart-traffic", title: "Traffic per uplink", pats: ["uplink/*/rx_Bps", "uplink/*/tx_Bps"], unit: "B/s", fmt: (v) => bytes(v) + "/s" },
    { id: "chart-targets", title: "Round trip per probe target", pats: ["target/*/*/rtt_ms"], unit: "ms", fmt: (v) => v.toFixed(v < 10 ? 1 : 0) + " ms" },
    { id: "chart-target-loss", title: "Loss per probe target", pats: ["target/*/*/loss_pct"], unit: "%", fmt: (v) => v.toFixed(0) + " %", range: [0, 100] },
    { id: "chart-security", title: "SIP attacks and blocks", pats: ["sipguard/*", "blocklist/*"], unit: "", fmt: (v) => String(+v.toFixed(v < 1 ? 2 : 1)) },
  ];
  const colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
  const plots = {};
  let view = { span: 86400, to: 0 }; // to 0: up to now, following
  let data = null;
  let asked = 0; // counts requests: an answer to an older one (a range since changed) is dropped

  function bytes(v) {
    const u = [["TB", 1e12], ["GB", 1e9], ["MB", 1e6], ["kB", 1e3]];
    for (const [n, f] of u) if (Math.abs(v) >= f) return (v / f).toFixed(v / f < 10 ? 1 : 0) + " " + n;
    return Math.round(v) + " B";
  }
  function match(pat, name) {
    const re = new RegExp("^" + pat.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join("[^/]*") + "$");
    return re.test(name);
  }
  function label(name) {
    const p = name.split("/");
    const what = { rx_Bps: "in", tx_Bps: "out", findings_per_min: "attacks found per minute", blocks_per_min: "blocked per minute", entries: "addresses blocked" };
    if (p[0] === "uplink") return p[1] + (what[p[2]] ? " " + what[p[2]] : "");
    if (p[0] === "target") return p[2] + " via " + p[1];
    return (p[0] === "sipguard" ? "sipguard: " : "blocklist: ") + (what[p[1]] || p[1]);
  }
  // The page's own format (app.js): the same in the legend and the failover list as elsewhere.
  function fmtTime(ts) { return window.applianceTime(new Date(ts * 1000).toISOString()); }

  // marksPlugin draws each failover as a dashed line across the plot, with its kind.
  function marksPlugin() {
    return {
      hooks: {
        draw: (u) => {
          const ms = (data && data.marks) || [];
          const ctx = u.ctx;
          let n = 0;
          ctx.save();
          for (const m of ms) {
            const ts = new Date(m.t).getTime() / 1000;
            if (ts < u.scales.x.min || ts > u.scales.x.max) continue;
            const x = Math.round(u.valToPos(ts, "x", true));
            ctx.strokeStyle = m.kind === "wan.failback" || m.kind === "wan.online" ? "#2ca02c" : "#d62728";
            ctx.setLineDash([5, 4]);
            ctx.lineWidth = 2 * devicePixelRatio;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.fillStyle = ctx.strokeStyle;
            ctx.font = (11 * devicePixelRatio) + "px sans-serif";
            ctx.fillText(m.kind.replace("wan.", ""), x + 4 * devicePixelRatio, u.bbox.top + 12 * devicePixelRatio);
            n++;
          }
          ctx.restore();
          // What is drawn, for people reading the DOM (and tests): marks and the y axis's top.
          u.root.parentElement.dataset.marks = String(n);
          u.root.parentElement.dataset.ymax = String(u.scales.y.max);
        },
      },
    };
  }

  function draw() {
    const zone = data.zone || "UTC";
    $("history-zone").textContent = "times in " + zone;
    const step = data.step_s;
    const x = [];
    for (let t = Math.floor(data.from / step) * step; t <= data.to; t += step) x.push(t);
    const index = new Map(x.map((t, i) => [t, i]));
    for (const sp of specs) {
      const names = Object.keys(data.series).filter((n) => sp.pats.some((p) => match(p, n))).sort();
      const box = $(sp.id);
      const cols = names.map((n) => {
        const col = new Array(x.length).fill(null);
        for (const [t, v] of data.series[n]) if (index.has(t)) col[index.get(t)] = v;
        return col;
      });
      box.dataset.series = String(names.length);
      box.dataset.points = String(cols.reduce((a, c) => a + c.filter((v) => v !== null).length, 0));
      const key = sp.id + ":" + names.join(",");
      if (plots[sp.id] && plots[sp.id].key === key) {
        plots[sp.id].u.setData([x, ...cols]);
        continue;
      }
      if (plots[sp.id]) plots[sp.id].u.destroy();
      const opts = {
        title: sp.title + (sp.unit ? " (" + sp.unit + ")" : ""),
        width: Math.max(300, box.clientWidth || 800), height: 200,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), zone),
        cursor: { drag: { x: true, y: false, setScale: false } },
        scales: { x: { time: true }, y: sp.range ? { range: sp.range } : { range: (u, lo, hi) => [0, Math.max(hi * 1.1, sp.unit === "ms" ? 1 : 0.1)] } },
        axes: [{ label: "time (" + zone + ")" }, { label: sp.unit, values: (u, vals) => vals.map((v) => sp.fmt(v)), size: 70 }],
        series: [{ value: (u, v) => (v == null ? "" : fmtTime(v)) },
          ...names.map((n, i) => ({ label: label(n), stroke: colors[i % colors.length], width: 1.5, spanGaps: false,
            value: (u, v) => (v == null ? "–" : sp.fmt(v)) }))],
        plugins: [marksPlugin()],
        hooks: { setSelect: [(u) => {
          if (u.select.width < 5) return;
          const lo = u.posToVal(u.select.left, "x"), hi = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          view = { span: Math.max(60, Math.round(hi - lo)), to: Math.round(hi) };
          load();
        }] },
      };
      box.replaceChildren();
      plots[sp.id] = { key, u: new uPlot(opts, [x, ...cols], box) };
    }
    const ms = data.marks || [];
    $("history-marks").replaceChildren(...ms.slice().reverse().map((m) => {
      const li = document.createElement("li");
      li.textContent = window.applianceTime(m.t) + " · " + m.kind + " · " + m.message;
      return li;
    }));
    if (!ms.length) {
      const li = document.createElement("li");
      li.className = "sub";
      li.textContent = "no failover in this range";
      $("history-marks").replaceChildren(li);
    }
  }

  async function load() {
    const to = view.to || Math.floor(Date.now() / 1000);
    const from = to - view.span;
    const pats = specs.flatMap((s) => s.pats).join(",");
    const n = ++asked;
    try {
      const r = await fetch("/api/history?series=" + encodeURIComponent(pats) + "&from=" + from + "&to=" + to, { credentials: "same-origin" });
      if (!r.ok) { $("history-state").textContent = ((await r.json().catch(() => ({}))).error) || r.statusText; return; }
      const d = await r.json();
      if (n !== asked) return;
      data = d;
      $("history-state").textContent = (view.to ? "zoomed: " : "last ") + human(view.span) + ", one point per " + human(data.step_s);
      draw();
      $("history-card").dataset.loaded = String(Date.now());
    } catch (e) { /* the next refresh will tell */ }
  }
  function human(s) {
    if (s >= 86400) return +(s / 86400).toFixed(1) + " d";
    if (s >= 3600) return +(s / 3600).toFixed(1) + " h";
    if (s >= 60) return Math.round(s / 60) + " min";
    return s + " s";
  }

  function renderBudget(list) {
    $("budget-card").classList.toggle("hidden", !list.length);
    $("budget").replaceChildren(...list.map((b) => {
      const div = document.createElement("div");
      div.className = "budget budget-" + (b.level || "ok");
      div.id = "budget-" + b.role;
      const head = document.createElement("div");
      const pct = b.budget_bytes ? (100 * b.used_bytes / b.budget_bytes) : 0;
      head.textContent = b.name + " (" + b.role + ", " + b.interface + "): " + bytes(b.used_bytes) + " of " + bytes(b.budget_bytes) +
        " used (" + pct.toFixed(pct < 10 ? 1 : 0) + " %)" + (b.level ? " · " + (b.level === "critical" ? "OVER BUDGET" : "over 80 %") : "");
      const bar = document.createElement("progress");
      bar.max = b.budget_bytes; bar.value = Math.min(b.used_bytes, b.budget_bytes);
      const sub = document.createElement("div");
      sub.className = "sub";
      sub.textContent = "projected " + bytes(b.projected_bytes) + " by the period's end, " + window.applianceTime(b.period_end) +
        " (period started " + window.applianceTime(b.period_start) + ")";
      div.append(head, bar, sub);
      return div;
    }));
  }
  async function loadBudget() {
    try {
      const r = await fetch("/api/budget", { credentials: "same-origin" });
      if (r.ok) renderBudget(await r.json());
    } catch (e) { /* the next refresh will tell */ }
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const b of document.querySelectorAll("#history-card button[data-span]")) {
      b.addEventListener("click", () => { view = { span: spans[b.dataset.span], to: 0 }; load(); });
    }
    window.addEventListener("resize", () => {
      for (const sp of specs) if (plots[sp.id]) plots[sp.id].u.setSize({ width: Math.max(300, $(sp.id).clientWidth), height: 200 });
    });
    load();
    loadBudget();
    setInterval(() => { if (!view.to) load(); loadBudget(); }, 30000);
  });
})();
