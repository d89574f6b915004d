package server

import (
	"net/http"
	"strings"
	"testing"
)

// TestBrowserGuard: what a page on another site can make a browser send is
// refused before it reaches the backend; CLI requests are untouched.
func TestBrowserGuard(t *testing.T) {
	h := newHarness(t, Options{})
	h.json("POST", "/v1/runs", `{"name":"a","steps":10}`)
	host := strings.TrimPrefix(h.srv.URL, "http://")
	for _, c := range []struct {
		name   string
		method string
		hdr    []string
		code   int
	}{
		{"cross-site form post", "POST", []string{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"}, 403},
		{"foreign Origin only", "POST", []string{"Origin", "http://evil.example"}, 403},
		{"other port on the same host", "POST", []string{"Sec-Fetch-Site", "same-site", "Origin", "http://127.0.0.1:1"}, 403},
		{"DNS rebinding read", "GET", []string{"Host", "evil.example:" + strings.Split(host, ":")[1]}, 403},
		{"the page itself", "POST", []string{"Sec-Fetch-Site", "same-origin", "Origin", "http://" + host}, 200},
		{"a CLI client", "POST", nil, 200},
		{"a unix-socket client", "POST", []string{"Host", "replayd"}, 200},
	} {
		req, err := http.NewRequest(c.method, h.srv.URL+"/v1/runs/a/pause", nil)
		if c.method == "GET" {
			req, err = http.NewRequest("GET", h.srv.URL+"/v1/runs", nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(c.hdr); i += 2 {
			if c.hdr[i] == "Host" {
				req.Host = c.hdr[i+1]
			} else {
				req.Header.Set(c.hdr[i], c.hdr[i+1])
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.code)
		}
	}
	// With a token, the daemon may be reached by name; the token decides.
	ht := newHarness(t, Options{Token: "s3cret"})
	req, _ := http.NewRequest("GET", ht.srv.URL+"/v1/runs", nil)
	req.Host = "replay.example.org"
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("by name with the token: %d, want 200", resp.StatusCode)
	}
}
