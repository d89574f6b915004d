package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Static returns the embedded files (index.html, app.js, style.css).
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil { // cannot happen: "static" is embedded above
		panic(err)
	}
	return sub
}

// Handler serves the page and its assets with prefix stripped from the
// path (mount it as mux.Handle("GET /ui/", web.Handler("/ui/"))). The files
// are answered with Cache-Control: no-cache so that a browser revalidates
// them after the daemon is upgraded, and with headers that keep the page
// out of frames and its scripts to its own origin (inline style attributes
// are allowed: the progress bars' widths).
func Handler(prefix string) http.Handler {
	fsrv := http.StripPrefix(prefix, http.FileServerFS(Static()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		fsrv.ServeHTTP(w, r)
	})
}
