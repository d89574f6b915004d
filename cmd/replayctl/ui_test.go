package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// uiFixture is a `replayctl ui` handler in front of a recording fake daemon.
type uiFixture struct {
	t    *testing.T
	srv  *httptest.Server // the proxy
	host string           // 127.0.0.1:PORT the handler was made for
	mu   sync.Mutex
	seen []*http.Request // requests that reached the daemon
}

func newUIFixture(t *testing.T) *uiFixture {
	f := &uiFixture{t: t}
	daemon := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.seen = append(f.seen, r.Clone(r.Context()))
		f.mu.Unlock()
		io.WriteString(w, `{"runs":[]}`)
	}))
	t.Cleanup(daemon.Close)
	target, _ := url.Parse(daemon.URL)
	// The handler checks Host against its port: start the listener first.
	f.srv = httptest.NewUnstartedServer(nil)
	port := f.srv.Listener.Addr().(*net.TCPAddr).Port
	h, link, err := newUIHandler(uiConfig{port: port, target: target, transport: http.DefaultTransport,
		daemonToken: "daemon-secret", token: "once", session: "sess"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://127.0.0.1:" + strconv.Itoa(port) + "/?token=once"; link != want {
		t.Fatalf("link %q, want %q", link, want)
	}
	f.host = "127.0.0.1:" + strconv.Itoa(port)
	f.srv.Config.Handler = h
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

// do sends one request; hdr is name, value pairs ("Host" sets the Host).
func (f *uiFixture) do(method, path string, hdr ...string) *http.Response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(`{"at":1}`))
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func (f *uiFixture) reached() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seen)
}

func TestUITokenExchange(t *testing.T) {
	f := newUIFixture(t)
	if r := f.do("GET", "/v1/runs"); r.StatusCode != 401 {
		t.Fatalf("no cookie: %d, want 401", r.StatusCode)
	}
	if r := f.do("GET", "/?token=wrong"); r.StatusCode != 403 || r.Header.Get("Set-Cookie") != "" {
		t.Fatalf("wrong token: %d %q, want 403 and no cookie", r.StatusCode, r.Header.Get("Set-Cookie"))
	}
	r := f.do("GET", "/?token=once")
	if r.StatusCode != 303 || r.Header.Get("Location") != "/ui/" {
		t.Fatalf("token exchange: %d Location %q, want 303 to /ui/", r.StatusCode, r.Header.Get("Location"))
	}
	var ck *http.Cookie
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, "replay_ui_") {
			ck = c
		}
	}
	if ck == nil || ck.Value != "sess" || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v, want HttpOnly SameSite=Strict with the session", ck)
	}
	if r := f.do("GET", "/?token=once"); r.StatusCode != 403 || r.Header.Get("Set-Cookie") != "" {
		t.Fatalf("second use of the token: %d, want 403 and no cookie", r.StatusCode)
	}
	if r := f.do("GET", "/v1/runs", "Cookie", ck.Name+"=not-the-session"); r.StatusCode != 401 {
		t.Fatalf("forged cookie: %d, want 401", r.StatusCode)
	}
	if n := f.reached(); n != 0 {
		t.Fatalf("%d unauthorised requests reached the daemon", n)
	}
	if r := f.do("GET", "/v1/runs", "Cookie", ck.Name+"=sess"); r.StatusCode != 200 {
		t.Fatalf("with the cookie: %d, want 200", r.StatusCode)
	}
	if f.reached() != 1 {
		t.Fatalf("the authorised request did not reach the daemon")
	}
	got := f.seen[0]
	if got.Header.Get("Authorization") != "Bearer daemon-secret" || got.Header.Get("Cookie") != "" {
		t.Fatalf("daemon got Authorization %q Cookie %q; want the daemon's token and no cookie",
			got.Header.Get("Authorization"), got.Header.Get("Cookie"))
	}
	// DNS rebinding: a page on another name pointing at 127.0.0.1.
	if r := f.do("GET", "/v1/runs", "Cookie", ck.Name+"=sess", "Host", "evil.example:"+strings.Split(f.host, ":")[1]); r.StatusCode != 403 {
		t.Fatalf("foreign Host: %d, want 403", r.StatusCode)
	}
}

func TestUICSRF(t *testing.T) {
	f := newUIFixture(t)
	cookie := "replay_ui_" + strings.Split(f.host, ":")[1] + "=sess"
	for _, c := range []struct {
		name string
		hdr  []string
		code int
	}{
		// A cross-site form post carries the cookie only if SameSite fails,
		// and never a custom header.
		{"no CSRF header", []string{"Cookie", cookie}, 403},
		{"foreign Origin", []string{"Cookie", cookie, csrfHeader, "1", "Origin", "http://evil.example"}, 403},
		{"other loopback port", []string{"Cookie", cookie, csrfHeader, "1", "Origin", "http://127.0.0.1:1"}, 403},
		{"header, no cookie", []string{csrfHeader, "1", "Origin", "http://" + f.host}, 401},
	} {
		if r := f.do("POST", "/v1/runs/a/reset", c.hdr...); r.StatusCode != c.code {
			t.Errorf("%s: %d, want %d", c.name, r.StatusCode, c.code)
		}
	}
	if n := f.reached(); n != 0 {
		t.Fatalf("%d refused requests reached the daemon", n)
	}
	if r := f.do("POST", "/v1/runs/a/reset", "Cookie", cookie, csrfHeader, "1", "Origin", "http://"+f.host); r.StatusCode != 200 {
		t.Fatalf("same-origin POST with the header: %d, want 200", r.StatusCode)
	}
	if f.reached() != 1 || f.seen[0].Method != "POST" || f.seen[0].URL.Path != "/v1/runs/a/reset" || f.seen[0].Header.Get(csrfHeader) != "" {
		t.Fatalf("daemon got %d requests (%v)", f.reached(), f.seen)
	}
}

func TestUIBadInput(t *testing.T) {
	var out, errb strings.Builder
	err := run([]string{"ui", "--port", "70000"}, &out, &errb)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--port 70000") {
		t.Errorf("--port 70000: %v, want a usage error naming it", err)
	}
	err = run([]string{"ui", "--addr", "unix:" + t.TempDir() + "/none.sock"}, &out, &errb)
	if !errors.Is(err, api.ErrUnreachable) {
		t.Errorf("no daemon: %v, want api.ErrUnreachable", err)
	}
	if out.String() != "" {
		t.Errorf("stdout %q: no link may be printed when the daemon is not there", out.String())
	}
}
