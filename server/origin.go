package server

import (
	"net"
	"net/http"
	"strings"
)

// browserGuard protects the API from other web sites a user visits, for
// the web view's sake:
//
//   - State-changing requests (POST, DELETE) that a browser marks as sent
//     from another origin (Sec-Fetch-Site, or an Origin that is not this
//     Host) are refused with 403 (net/http's CrossOriginProtection). The
//     API decodes JSON whatever the Content-Type, so without this a
//     cross-site <form enctype=text/plain> could reset or create runs on a
//     loopback listener without a token. Clients that are not browsers
//     send neither header and are not affected.
//   - Without a token (a unix socket, or loopback TCP), a request whose
//     Host is a DNS name other than localhost is refused with 403: it can
//     only come from a page that rebound its own name to 127.0.0.1 (DNS
//     rebinding) to read the API. IP literals, localhost and one-label
//     names (api.Client says "replayd" over a unix socket) pass. With a
//     token the token decides, and the daemon may be reached by name.
func browserGuard(next http.Handler, haveToken bool) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused (a browser sent it from another site)")
	}))
	guarded := cop.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !haveToken && !localHost(r.Host) {
			writeError(w, http.StatusForbidden, "request for host "+sanitize(r.Host)+" refused: without --auth-token the daemon answers only to localhost or an IP address")
			return
		}
		guarded.ServeHTTP(w, r)
	})
}

// localHost reports whether host (with an optional port) is an IP
// literal, localhost, or a name of one label.
func localHost(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if net.ParseIP(h) != nil || strings.EqualFold(h, "localhost") {
		return true
	}
	return h != "" && !strings.Contains(h, ".")
}
