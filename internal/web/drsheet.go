package web

import (
	"html/template"
	"net/http"

	"github.com/officeedge/appliance/internal/backup"
	"github.com/officeedge/appliance/internal/backup/drsheet"
	"github.com/officeedge/appliance/internal/setupcode"
)

// drSheetHTML is the sheet's page; drSheetCSS makes it print on plain A4 (served from the box:
// the page's Content-Security-Policy allows no inline style).
const drSheetHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Disaster-recovery sheet: {{.Site}}</title>
<link rel="stylesheet" href="/static/app.css">
<link rel="stylesheet" href="/dr-sheet.css">
</head>
<body class="drsheet">
<h1>Disaster-recovery sheet: {{.Site}}</h1>
<p class="sub">Made {{.Made.Format "2006-01-02 15:04 UTC"}} from the box's configuration. Print it, keep it away from the box, and print it again after each change. <a class="noprint" href="/">Back to the status page</a></p>
{{range .Sections}}
<section>
<h2>{{.Title}}</h2>
{{if .Intro}}<p>{{.Intro}}</p>{{end}}
{{if .Rows}}<table>
<thead><tr>{{range index .Rows 0}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>{{range $i, $r := .Rows}}{{if $i}}<tr>{{range $r}}<td>{{.}}</td>{{end}}</tr>{{end}}{{end}}</tbody>
</table>{{end}}
{{if .Items}}<ul>{{range .Items}}<li>{{.}}</li>{{end}}</ul>{{end}}
</section>
{{end}}
</body>
</html>
`

const drSheetCSS = `body.drsheet { max-width: 60em; margin: 1em auto; padding: 0 1em; background: #fff; color: #000; }
body.drsheet h1 { font-size: 20px; }
body.drsheet h2 { font-size: 15px; margin: 1.2em 0 .3em; border-bottom: 1px solid #999; }
body.drsheet table { border-collapse: collapse; width: 100%; }
body.drsheet th, body.drsheet td { border: 1px solid #bbb; padding: 3px 6px; text-align: left; vertical-align: top; font-size: 13px; }
body.drsheet section { break-inside: avoid; }
@media print { .noprint { display: none; } body.drsheet { margin: 0; } }
`

var drSheetTmpl = template.Must(template.New("dr").Parse(drSheetHTML))

// handleDRSheet serves the printable disaster-recovery sheet, made from the config in
// force at each request.
func (s *Server) handleDRSheet(w http.ResponseWriter, r *http.Request) {
	var stp *backup.Status
	if st, ok := s.backups(); ok {
		stp = &st
	}
	sheet := s.withSetupCode(r, drsheet.New(s.o.Config(), stp, s.o.Now()))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := drSheetTmpl.Execute(w, sheet); err != nil {
		s.o.Log.Error("dr sheet", "err", err)
	}
}

// handleDRSheetText serves the same sheet as plain text.
func (s *Server) handleDRSheetText(w http.ResponseWriter, r *http.Request) {
	var stp *backup.Status
	if st, ok := s.backups(); ok {
		stp = &st
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = s.withSetupCode(r, drsheet.New(s.o.Config(), stp, s.o.Now())).WriteText(w)
}

// withSetupCode adds the box's setup code and its own update password, if it has them (it
// was set up from a generic image), to the sheet of a logged-in person: the sheet is open to
// the whole LAN, and the code lets whoever holds it set the box up should it ever go back to
// setup, the password push an image to it.
func (s *Server) withSetupCode(r *http.Request, sh drsheet.Sheet) drsheet.Sheet {
	var items []string
	if s.o.StateDir != "" {
		if code := setupcode.Stored(s.o.StateDir); code != "" {
			items = append(items, "Setup code (if the box is ever reset to setup): "+code)
		}
	}
	if pw := setupcode.StoredUpdatePassword(s.updatePasswordFile()); pw != "" {
		items = append(items, "Update password (gokrazy, LAN port 8080; scripts/update-box --password-file): "+pw)
	}
	if len(items) == 0 {
		return sh
	}
	if s.auth.session(r) == nil {
		items = []string{"Setup code and update password: log in on the status page, then print this sheet again to have them here."}
	}
	sh.Sections = append(sh.Sections, drsheet.Section{Title: "Setup code", Items: items})
	return sh
}

// updatePasswordFile is the box's own update password file (Options.UpdatePasswordFile, for
// tests; default setupcode.UpdatePasswordFile).
func (s *Server) updatePasswordFile() string {
	if s.o.UpdatePasswordFile != "" {
		return s.o.UpdatePasswordFile
	}
	return setupcode.UpdatePasswordFile
}

func handleDRSheetCSS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	_, _ = w.Write([]byte(drSheetCSS))
}
