// The Configuration card (logged in): edit the TOML, check it (errors with line and field,
// the firewall's diff, what it would let in), apply it, and confirm it before the box puts
// the old file back by itself; earlier versions with one-click rollback. Text goes in with
// textContent only.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let csrf = "", pending = null, loggedIn = false, edited = false;
  function msg(text, err) { const m = $("cfg-msg"); m.textContent = text; m.className = "msg" + (err ? " err" : ""); }
  async function post(path, body) {
    const r = await fetch(path, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body) });
    return [r, await r.json().catch(() => ({}))];
  }
  function showCheck(c) {
    const errs = $("cfg-errors");
    errs.replaceChildren();
    for (const e of c.errors || []) {
      const li = document.createElement("li");
      li.textContent = e.text;
      li.className = "err";
      if (e.line) {
        li.title = "go to line " + e.line;
        li.addEventListener("click", () => goLine(e.line, e.col));
      }
      errs.appendChild(li);
    }
    for (const w of c.warnings || []) {
      const li = document.createElement("li"); li.textContent = "warning: " + w; errs.appendChild(li);
    }
    const wide = $("cfg-widening");
    wide.replaceChildren();
    for (const w of c.widening || []) { const li = document.createElement("li"); li.textContent = w; wide.appendChild(li); }
    $("cfg-widening-box").classList.toggle("hidden", !(c.widening || []).length);
    $("cfg-diff").textContent = (c.errors || []).length ? "" : (c.firewall_diff || "the firewall stays as it is");
  }
  function goLine(line, col) {
    const ta = $("cfg-text"), lines = ta.value.split("\n");
    let at = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) at += lines[i].length + 1;
    at += Math.max((col || 1) - 1, 0);
    ta.focus(); ta.setSelectionRange(at, at);
  }
  function renderPending() {
    const box = $("cfg-pending");
    box.classList.toggle("hidden", !pending);
    if (!pending) return;
    const left = Math.max(0, Math.round((new Date(pending.deadline) - Date.now()) / 1000));
    $("cfg-pending-text").textContent =
      `${pending.what} by ${pending.by} is in force, but is put back in ${left} s unless you confirm it.`;
  }
  function renderHistory(list) {
    const body = $("cfg-history");
    body.replaceChildren();
    for (const v of list) {
      const tr = document.createElement("tr");
      const when = document.createElement("td"); when.textContent = window.applianceTime(v.time);
      const size = document.createElement("td"); size.textContent = v.size + " bytes"; size.className = "num";
      const act = document.createElement("td");
      const view = document.createElement("a"); view.href = "/api/config/version?name=" + encodeURIComponent(v.name);
      view.textContent = "view"; view.target = "_blank";
      const rb = document.createElement("button"); rb.textContent = "roll back to this"; rb.dataset.name = v.name;
      rb.className = "cfg-rollback";
      rb.addEventListener("click", () => change("/api/config/rollback", { name: v.name }));
      act.append(view, " ", rb);
      tr.append(when, size, act);
      body.appendChild(tr);
    }
  }
  async function load(keepText) {
    let r;
    try { r = await fetch("/api/config", { credentials: "same-origin" }); } catch (e) { r = null; }
    if (!r || !r.ok) {
      const why = r ? (await r.json().catch(() => ({}))).error || "HTTP " + r.status : "no answer";
      // A change that cut this page off is put back by the box itself: say so.
      if (pending) msg(`the box does not answer this page since the change (${why}): it puts the old config back by itself at ${window.applianceTime(pending.deadline)}`, true);
      else msg(why, true);
      return;
    }
    const c = await r.json();
    if (!keepText || !edited) { $("cfg-text").value = c.text; edited = false; }
    $("cfg-path").textContent = `${c.path}: a change is put back after ${c.window_s} s unless confirmed`;
    pending = c.pending;
    renderPending();
    renderHistory(c.history);
  }
  async function change(path, body) {
    msg("applying…");
    const [r, j] = await post(path, body);
    if (r.status === 422 && j.check) {
      showCheck(j.check);
      const n = j.check.errors.length;
      msg(n ? `${n} error(s): nothing was applied` : j.error, true);
      return;
    }
    if (!r.ok) { msg(j.error || r.statusText, true); return; }
    pending = j.pending;
    renderPending();
    msg("applied: confirm it once you see the page still works");
    edited = false;
    load(false).catch(() => {});
  }
  $("cfg-text").addEventListener("input", () => { edited = true; });
  $("cfg-check").addEventListener("click", async () => {
    msg("checking…");
    const [r, j] = await post("/api/config/check", { text: $("cfg-text").value });
    if (!r.ok) { msg(j.error || r.statusText, true); return; }
    showCheck(j);
    msg(j.errors.length ? `${j.errors.length} error(s)` : j.changed ? "valid" : "valid, and the same as the file in force", j.errors.length > 0);
  });
  $("cfg-apply").addEventListener("click", () =>
    change("/api/config/apply", { text: $("cfg-text").value, force: $("cfg-force").checked }));
  $("cfg-confirm").addEventListener("click", async () => {
    if (!pending) return;
    const [r, j] = await post("/api/config/confirm", { id: pending.id });
    if (!r.ok) { msg(j.error || r.statusText, true); return; }
    pending = null; renderPending(); msg("confirmed: the change stays");
  });
  $("cfg-reload").addEventListener("click", () => { edited = false; load(false); });
  async function session() {
    const r = await fetch("/api/session", { credentials: "same-origin" });
    const j = await r.json();
    csrf = j.csrf || "";
    $("config-card").classList.toggle("hidden", !j.logged_in);
    if (j.logged_in && !loggedIn) await load(false);
    loggedIn = !!j.logged_in;
  }
  new MutationObserver(session).observe($("actions"), { attributes: true, attributeFilter: ["class"] });
  session();
  setInterval(renderPending, 1000);
  setInterval(() => { if (loggedIn) load(true).catch(() => {}); }, 5000);
})();
