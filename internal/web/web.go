// Package web holds what the three server-rendered pages share (the cashier's till page at the
// agent, the operator's dashboard and the member's card at the hub): the page layout and its
// embedded style sheet and script, signed values for session cookies and links, CSRF tokens,
// and the security headers every page is served with.
//
// Pages are html/template, rendered into a buffer first, so a template error is a clean 500 and
// never half a page. Nothing is loaded from another origin: a store PC offline still shows every
// page whole.
package web

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
)

//go:embed static templates
var files embed.FS

// Static serves the embedded style sheet and script at /static/ (mount with
// mux.Handle("GET /static/", web.Static())). They change only with the binary, so browsers may
// keep them for an hour.
func Static() http.Handler {
	sub, _ := fs.Sub(files, "static")
	fsrv := http.StripPrefix("/static/", http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		fsrv.ServeHTTP(w, r)
	})
}

// Parse returns the shared layout (templates/layout.html: "layout", "head", "flash") with the
// page templates of fsys matching patterns added. A page template defines "title" and "main"
// (and may define "nav"), and is rendered with Render(w, t, "layout", data).
func Parse(fsys fs.FS, funcs template.FuncMap, patterns ...string) *template.Template {
	t := template.New("").Funcs(Funcs).Funcs(funcs)
	t = template.Must(t.ParseFS(files, "templates/*.html"))
	return template.Must(t.ParseFS(fsys, patterns...))
}

// Render executes template name into a buffer and writes it with status, so a failing template
// answers a plain 500 instead of half a page.
func Render(w http.ResponseWriter, log *slog.Logger, t *template.Template, status int, name string, data any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		if log != nil {
			log.Error("page template failed", slog.String("template", name), slog.Any("err", err))
		}
		http.Error(w, "the page could not be shown; the error is in the server's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// Headers sets the headers every page is served with: a content security policy allowing only
// this origin (no inline script, no other origin's code, not framed by another site), no
// referrer (a member card's URL is its key), no caching (a balance or a receipt must never come
// from a cache), no MIME sniffing.
func Headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "+
			"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "same-origin") // nothing to another site; the pages' own forms send their Origin (no-referrer makes it "null")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// Funcs are template functions every page may use.
var Funcs = template.FuncMap{
	// points formats a whole number with thin groups: 12345 -> "12,345".
	"points": Group,
	// money formats minor units of a currency as major units with its decimals: 1250 "EUR" ->
	// "12.50", 2500 "JPY" -> "2,500" (loyalty.CurrencyDigits).
	"money": MoneyOf,
}
