package setup

import "html/template"

// pageCSS is the page's whole style, inline (the Content-Security-Policy allows it by its
// hash): the status page's colours and cards, without its files.
const pageCSS = `
:root { --ok:#1a7f37; --bad:#c0392b; --warn:#b7791f; --mut:#667; --bg:#f5f6f8; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background:var(--bg); color:#1b1f24; }
header { padding:16px 24px; background:#1f2933; color:#fff; }
header h1 { margin:0; font-size:20px; }
header .sub { color:#9aa5b1; font-size:12px; }
main { max-width:46em; margin:0 auto; padding:16px; }
.card { background:#fff; border-radius:8px; padding:12px 16px; margin:0 0 16px; box-shadow:0 1px 2px rgba(0,0,0,.08); }
h2 { font-size:16px; margin:0 0 8px; }
p { margin:6px 0; }
.hint { color:var(--mut); font-size:13px; }
label { display:block; font-weight:600; margin:12px 0 4px; }
input, select, textarea { width:100%; padding:7px 9px; border:1px solid #c4cdd5; border-radius:6px; font:inherit; background:#fff; }
textarea { min-height:4.5em; font-family:ui-monospace, monospace; font-size:13px; }
fieldset { border:1px solid #e4e7eb; border-radius:6px; margin:12px 0; padding:4px 12px 12px; }
legend { font-weight:600; padding:0 4px; }
.bad { border-color:var(--bad); box-shadow:0 0 0 2px rgba(192,57,43,.2); }
#errors:empty, #errors-card:has(#errors:empty) { display:none; }
#errors-card { border-left:4px solid var(--bad); }
#errors li { color:var(--bad); }
#boot-errors { border-left:4px solid var(--warn); }
#boot-errors li { font-family:ui-monospace, monospace; font-size:13px; word-break:break-all; }
#applied { border-left:4px solid var(--ok); }
button { padding:10px 18px; border:0; border-radius:6px; background:#1f6feb; color:#fff; font:inherit; font-weight:600; cursor:pointer; }
button:disabled { background:#8b949e; cursor:wait; }
a#continue { display:inline-block; margin-top:8px; padding:10px 18px; border-radius:6px; background:#1a7f37; color:#fff; font-weight:600; text-decoration:none; }
footer { color:var(--mut); font-size:12px; text-align:center; padding:0 0 24px; }
`

// pageJS shows the address fields only for a fixed address, stops a second submit, and says
// the confirmation deadline on the person's own clock (the box's may not be set yet).
const pageJS = `
for (const sel of document.querySelectorAll("select[data-static]")) {
  const box = document.getElementById(sel.dataset.static);
  const show = () => { box.hidden = sel.value !== "static"; };
  sel.addEventListener("change", show);
  show();
}
const form = document.getElementById("setup");
if (form) form.addEventListener("submit", () => {
  const b = document.getElementById("apply");
  setTimeout(() => { b.disabled = true; b.textContent = "Applying... (this takes a few seconds)"; }, 0);
});
const dl = document.getElementById("deadline");
if (dl) {
  const t = new Date(Date.now() + Number(dl.dataset.seconds) * 1000);
  dl.textContent = " (before " + t.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"}) + " by this computer's clock)";
}
`

// pageHTML is the form, and in its place the result once a configuration was applied.
// Field ids are a contract (design.md): a browser test finds them by id.
const pageHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Set up the office box</title>
<style>` + pageCSS + `</style>
</head>
<body>
<header><h1>Set up the office box</h1><div class="sub">This box has no configuration yet. appliance {{.Version}}</div></header>
<main>
{{if and .BootErrors (not .Applied)}}<section class="card" id="boot-errors">
<h2>The configuration file on the SD card was not used</h2>
<p>The file <b>appliance.toml</b> found on the SD card's boot partition has errors. It was renamed <b>appliance.toml.rejected</b>, and these errors were written next to it in <b>appliance.toml.errors.txt</b>. Correct the file on a PC and put it back as appliance.toml, then restart the box; or fill in this page instead.</p>
<ul>{{range .BootErrors}}<li>{{.}}</li>{{end}}</ul>
</section>{{end}}
{{if .Applied}}<section class="card" id="applied">
<h2>Done: the box now runs this configuration</h2>
<p>Log in on the box's page with the password you just chose, and <b>confirm</b> the change there within <b>{{.Window}}</b><span id="deadline" data-seconds="{{.WindowSecs}}"></span>.</p>
<p>If it is not confirmed in time, the box puts the change back and comes back to this setup page (with the same setup code).</p>
<p class="hint">The box's page uses a certificate the box made itself: the browser warns about it the first time. The box's own address on the office network is {{.LANAddress}}: if this computer is on another network, give it an address in {{.LANNet}} to reach the box.</p>
<a id="continue" href="{{.Continue}}">Open the box's page and confirm</a>
</section>
{{else}}<section class="card" id="errors-card">
<h2>Please correct these answers</h2>
<ul id="errors">{{range .Errors}}<li data-field="{{.Field}}">{{.}}</li>{{end}}</ul>
</section>
<form id="setup" method="post" action="/setup" autocomplete="off">
<section class="card">
<h2>1. The setup code</h2>
<p class="hint">It is shown on a screen plugged into the box (its console), and on the disaster-recovery sheet. Capitals and dashes don't matter.</p>
<label for="code">Setup code</label>
<input id="code" name="code" required maxlength="64" autocomplete="off" autocapitalize="characters" spellcheck="false" placeholder="XXXX-XXXX"{{if .Bad.code}} class="bad" aria-invalid="true"{{end}}>
</section>

<section class="card">
<h2>2. The office</h2>
<label for="site">Office name</label>
<input id="site" name="site" required maxlength="64" value="{{.V.site}}" placeholder="Smith &amp; Co, High Street"{{if .Bad.site}} class="bad" aria-invalid="true"{{end}}>
<p class="hint">Shown on the box's page and in its emails.</p>
<label for="password">Password for the box's page</label>
<input id="password" name="password" type="password" required minlength="10" maxlength="256" autocomplete="new-password"{{if .Bad.password}} class="bad" aria-invalid="true"{{end}}>
<p class="hint">At least 10 characters. Keep it with the disaster-recovery sheet.</p>
<label for="password2">The same password again</label>
<input id="password2" name="password2" type="password" required minlength="10" maxlength="256" autocomplete="new-password"{{if .Bad.password2}} class="bad" aria-invalid="true"{{end}}>
</section>

<section class="card">
<h2>3. The internet lines</h2>
<p class="hint">The office network (LAN) is on the box's port <b>{{.LAN}}</b>: this computer is on it. Plug the internet lines into the other ports{{if .Interfaces}} ({{range $i, $n := .Interfaces}}{{if $i}}, {{end}}{{$n}}{{end}}){{end}}.</p>
<datalist id="ports">{{range .Interfaces}}<option value="{{.}}">{{end}}</datalist>
<fieldset>
<legend>Main line (fibre or DSL router)</legend>
<label for="primary-interface">Port it is plugged into</label>
<input id="primary-interface" name="primary-interface" list="ports" required maxlength="64" value="{{index .V "primary-interface"}}" placeholder="eth1"{{if index .Bad "primary-interface"}} class="bad" aria-invalid="true"{{end}}>
<label for="primary-mode">How the box gets its address on this line</label>
<select id="primary-mode" name="primary-mode" data-static="primary-static"{{if index .Bad "primary-mode"}} class="bad" aria-invalid="true"{{end}}>
<option value="dhcp"{{if eq (index .V "primary-mode") "dhcp"}} selected{{end}}>Automatically, from the router (DHCP)</option>
<option value="static"{{if eq (index .V "primary-mode") "static"}} selected{{end}}>Fixed: the provider gave an address</option>
</select>
<div id="primary-static">
<label for="primary-address">The box's address on the line, with its prefix length</label>
<input id="primary-address" name="primary-address" maxlength="64" value="{{index .V "primary-address"}}" placeholder="198.51.100.2/29"{{if index .Bad "primary-address"}} class="bad" aria-invalid="true"{{end}}>
<label for="primary-gateway">Gateway (the provider's router)</label>
<input id="primary-gateway" name="primary-gateway" maxlength="64" value="{{index .V "primary-gateway"}}" placeholder="198.51.100.1"{{if index .Bad "primary-gateway"}} class="bad" aria-invalid="true"{{end}}>
</div>
</fieldset>
<fieldset>
<legend>Backup line (4G/5G modem), if there is one</legend>
<label for="backup-interface">Port it is plugged into (leave empty for none)</label>
<input id="backup-interface" name="backup-interface" list="ports" maxlength="64" value="{{index .V "backup-interface"}}" placeholder="none"{{if index .Bad "backup-interface"}} class="bad" aria-invalid="true"{{end}}>
<label for="backup-mode">How the box gets its address on this line</label>
<select id="backup-mode" name="backup-mode" data-static="backup-static"{{if index .Bad "backup-mode"}} class="bad" aria-invalid="true"{{end}}>
<option value="dhcp"{{if eq (index .V "backup-mode") "dhcp"}} selected{{end}}>Automatically, from the modem (DHCP)</option>
<option value="static"{{if eq (index .V "backup-mode") "static"}} selected{{end}}>Fixed: the provider gave an address</option>
</select>
<div id="backup-static">
<label for="backup-address">The box's address on the line, with its prefix length</label>
<input id="backup-address" name="backup-address" maxlength="64" value="{{index .V "backup-address"}}" placeholder="203.0.113.2/29"{{if index .Bad "backup-address"}} class="bad" aria-invalid="true"{{end}}>
<label for="backup-gateway">Gateway (the modem)</label>
<input id="backup-gateway" name="backup-gateway" maxlength="64" value="{{index .V "backup-gateway"}}" placeholder="203.0.113.1"{{if index .Bad "backup-gateway"}} class="bad" aria-invalid="true"{{end}}>
</div>
</fieldset>
</section>

<section class="card">
<h2>4. The phones</h2>
<label for="pbx">The phone system's (PBX's) address on the office network</label>
<input id="pbx" name="pbx" required maxlength="64" value="{{.V.pbx}}" placeholder="192.168.1.10"{{if .Bad.pbx}} class="bad" aria-invalid="true"{{end}}>
<p class="hint">The office network is {{.LANNet}} (the box is {{.LANAddress}}): give the PBX a fixed address in it.</p>
<label for="trunks">Your phone line provider (SIP trunk): its networks or host names, one a line</label>
<textarea id="trunks" name="trunks" rows="3" placeholder="192.0.2.0/28&#10;sip.provider.example"{{if .Bad.trunks}} class="bad" aria-invalid="true"{{end}}>{{.V.trunks}}</textarea>
<p class="hint">Ask the provider which addresses its calls come from. Nothing else on the internet can send calls to the PBX.</p>
</section>

<section class="card">
<h2>5. Remote administration</h2>
<label for="admin">Networks or host names allowed to manage the box from the internet, one a line</label>
<textarea id="admin" name="admin" rows="2" placeholder="203.0.113.7/32"{{if .Bad.admin}} class="bad" aria-invalid="true"{{end}}>{{.V.admin}}</textarea>
<p class="hint">Your IT company's office, for example. Leave it empty to manage the box only from the office network.</p>
</section>

<section class="card">
<p>Everything else keeps its safe defaults; change it later on the box's page (Configuration).</p>
<button id="apply" type="submit">Apply this configuration</button>
</section>
</form>
{{end}}
</main>
<footer>Office edge appliance: setup</footer>
<script>` + pageJS + `</script>
</body>
</html>
`

var pageTmpl = template.Must(template.New("setup").Parse(pageHTML))
