// Package portal serves the tenant portal: a few static files, embedded in
// the binary, that work against the public /v1 API with fetch and the
// caller's API key or portal-link token. It holds no credential and has no
// route of its own into the registry.
package portal

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Prefix is where Handler expects to be mounted.
const Prefix = "/portal/"

// Handler serves the portal under Prefix. The Content-Security-Policy
// allows the portal's own files and fetches to its own origin only, so that
// a script injected through data shown (a receiver's response, an event's
// body) could neither run nor send the token elsewhere.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix(Prefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// The files change with the binary: revalidate rather than run an
		// old script against a new API.
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
