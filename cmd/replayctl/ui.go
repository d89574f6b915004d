package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

var uiCmd = command{
	name:     "ui",
	synopsis: "[--port N] [--open]",
	summary:  "serve the daemon's web view on a loopback port, behind a one-time link",
	example:  "replayctl ui --open\nreplayctl ui --port 8765   # then open the printed URL",
	run:      runUI,
}

// The daemon's API is a unix socket (mode 0600) that browsers cannot reach.
// `replayctl ui` listens on 127.0.0.1 and proxies the page and the API to
// it. Anyone on the machine can connect to a loopback port, so the proxy
// lets a browser in only with a secret:
//
//   - The printed URL carries a random one-time token (?token=…). The first
//     request with it gets a session cookie (HttpOnly, SameSite=Strict) and a
//     redirect to the page; the token is then spent. Every other request
//     needs the cookie (401 without).
//   - State-changing requests (anything but GET and HEAD) also need the
//     header X-Replay-CSRF (which the page sends and a cross-site form
//     cannot), and an Origin, when the browser sends one, of this endpoint.
//   - The Host header must name this endpoint (127.0.0.1:PORT or
//     localhost:PORT), so that a DNS-rebinding page on another name cannot
//     use the browser as a relay.
//
// Cookies are not isolated by port: another program on 127.0.0.1 that the
// browser visits would be sent the cookie. The session ends with the
// process; run `replayctl ui` while you use the page.

// csrfHeader is the header a state-changing request must carry.
const csrfHeader = "X-Replay-CSRF"

func runUI(e *env, c *command, args []string) error {
	fs := e.flags(c)
	var port int
	var open bool
	fs.IntVar(&port, "port", 0, "loopback port to listen on (0: any free port)")
	boolFlag(fs, &open, "open", "", "open the page in the default browser (xdg-open)")
	if err := e.parse(c, fs, args); err != nil {
		return helped(err)
	}
	if err := noArgs(c, fs.Args()); err != nil {
		return err
	}
	if port < 0 || port > 65535 {
		return usagef("ui: --port %d: want 0..65535", port)
	}
	cl := e.client()
	if err := cl.Health(e.ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("ui: %w", err)
	}
	defer ln.Close()
	port = ln.Addr().(*net.TCPAddr).Port
	tr, base := cl.Transport()
	target, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("ui: daemon address %q: %w", cl.Addr(), err)
	}
	h, link, err := newUIHandler(uiConfig{port: port, target: target, transport: tr, daemonToken: e.g.token})
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, link)
	fmt.Fprintf(e.stderr, "replayctl ui: serving %s's web view on 127.0.0.1:%d; the link works once; Ctrl-C ends it\n", cl.Addr(), port)
	if open {
		if err := openBrowser(link); err != nil {
			fmt.Fprintf(e.stderr, "replayctl ui: could not open a browser (%v): open the link yourself\n", err)
		}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("ui: %w", err)
	case <-e.ctx.Done():
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx) // event streams do not end by themselves: Close after the grace
		srv.Close()
		return nil
	}
}

func openBrowser(link string) error {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	cmd := exec.Command(name, link)
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}

// uiConfig is what newUIHandler needs.
type uiConfig struct {
	port        int
	target      *url.URL          // the daemon's URL prefix
	transport   http.RoundTripper // reaches the daemon (unix socket or TCP)
	daemonToken string            // bearer token of the daemon, if it has one
	// token and session are the one-time token and the session secret;
	// empty means random (tests set them).
	token, session string
}

// uiHandler is the proxy of `replayctl ui`; see the comment at the top.
type uiHandler struct {
	hosts   []string // acceptable Host headers
	origin  string   // acceptable Origin
	cookie  string   // session cookie name (per port: cookies ignore ports)
	token   [sha256.Size]byte
	session [sha256.Size]byte
	secret  string // the session cookie's value
	mu      sync.Mutex
	spent   bool // the one-time token was exchanged
	proxy   *httputil.ReverseProxy
}

// newUIHandler returns the proxy and the link to print.
func newUIHandler(cfg uiConfig) (http.Handler, string, error) {
	tok, sess := cfg.token, cfg.session
	var err error
	if tok == "" {
		if tok, err = randomHex(); err != nil {
			return nil, "", err
		}
	}
	if sess == "" {
		if sess, err = randomHex(); err != nil {
			return nil, "", err
		}
	}
	p := strconv.Itoa(cfg.port)
	h := &uiHandler{
		hosts:  []string{"127.0.0.1:" + p, "localhost:" + p},
		origin: "http://127.0.0.1:" + p,
		cookie: "replay_ui_" + p,
		token:  sha256.Sum256([]byte(tok)),
		secret: sess,
	}
	h.session = sha256.Sum256([]byte(sess))
	target, daemonToken := cfg.target, cfg.daemonToken
	h.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
			// The browser's cookie is this proxy's business, not the
			// daemon's; the daemon's token is never the browser's.
			pr.Out.Header.Del("Cookie")
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del(csrfHeader)
			// This proxy checked where the request came from; to the
			// daemon it is a same-origin request of the proxy's own.
			for _, k := range []string{"Origin", "Referer", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest", "Sec-Fetch-User"} {
				pr.Out.Header.Del(k)
			}
			if daemonToken != "" {
				pr.Out.Header.Set("Authorization", "Bearer "+daemonToken)
			}
		},
		Transport:     cfg.transport,
		FlushInterval: -1, // event streams: every write goes out at once
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			uiError(w, http.StatusBadGateway, "replayctl ui: the daemon did not answer: "+err.Error())
		},
	}
	return h, "http://127.0.0.1:" + p + "/?token=" + tok, nil
}

func randomHex() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("ui: random token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// uiError answers like the daemon: one line of JSON.
func uiError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"error\":%q}\n", msg)
}

func equalSecret(got string, want [sha256.Size]byte) bool {
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], want[:]) == 1
}

func (h *uiHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hostOK := false
	for _, hh := range h.hosts {
		if strings.EqualFold(r.Host, hh) {
			hostOK = true
		}
	}
	if !hostOK {
		uiError(w, http.StatusForbidden, "replayctl ui: wrong Host "+strconv.Quote(r.Host)+": open the printed 127.0.0.1 link")
		return
	}
	if tok := r.URL.Query().Get("token"); tok != "" {
		h.exchange(w, r, tok)
		return
	}
	c, err := r.Cookie(h.cookie)
	if err != nil || !equalSecret(c.Value, h.session) {
		uiError(w, http.StatusUnauthorized, "replayctl ui: no session: open the link replayctl ui printed (a new one after a restart)")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if r.Header.Get(csrfHeader) == "" {
			uiError(w, http.StatusForbidden, "replayctl ui: "+r.Method+" without the "+csrfHeader+" header (cross-site requests are refused)")
			return
		}
		if o := r.Header.Get("Origin"); o != "" && o != h.origin && o != strings.Replace(h.origin, "127.0.0.1", "localhost", 1) {
			uiError(w, http.StatusForbidden, "replayctl ui: request from origin "+strconv.Quote(o)+" refused")
			return
		}
	}
	h.proxy.ServeHTTP(w, r)
}

// exchange trades the one-time token for the session cookie, once.
func (h *uiHandler) exchange(w http.ResponseWriter, r *http.Request, tok string) {
	if r.Method != http.MethodGet {
		uiError(w, http.StatusMethodNotAllowed, "replayctl ui: the token is exchanged by GET")
		return
	}
	h.mu.Lock()
	ok := !h.spent && equalSecret(tok, h.token)
	if ok {
		h.spent = true
	}
	h.mu.Unlock()
	if !ok {
		uiError(w, http.StatusForbidden, "replayctl ui: this link was already used or is wrong: restart replayctl ui for a new one")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: h.cookie, Value: h.secret, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}
