package main

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseListen(t *testing.T) {
	for _, c := range []struct {
		listen  string
		token   bool
		network string
		addr    string
		err     string
	}{
		{"", false, "unix", "/data/replayd.sock", ""},
		{"unix:/run/r.sock", false, "unix", "/run/r.sock", ""},
		{"/tmp/x.sock", false, "unix", "/tmp/x.sock", ""},
		{"127.0.0.1:7070", false, "tcp", "127.0.0.1:7070", ""},
		{"[::1]:7070", false, "tcp", "[::1]:7070", ""},
		{"localhost:7070", false, "tcp", "localhost:7070", ""},
		{"0.0.0.0:7070", false, "", "", "not a loopback address; serving beyond this machine needs --auth-token"},
		{":7070", false, "", "", "every interface"},
		{"10.1.2.3:7070", false, "", "", "not a loopback"},
		{"0.0.0.0:7070", true, "tcp", "0.0.0.0:7070", ""},
		{":7070", true, "tcp", ":7070", ""},
		{"nonsense", false, "", "", "want unix:/path"},
		{"127.0.0.1:", false, "", "", "missing port"},
		{"unix:", false, "", "", "empty socket path"},
		{"unix:/" + strings.Repeat("d", 120) + "/s.sock", false, "", "", "longer than the 107"},
	} {
		ep, err := parseListen(c.listen, "/data", c.token)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.listen, err, c.err)
			}
			continue
		}
		if err != nil || ep.network != c.network || ep.addr != c.addr {
			t.Errorf("%q: %+v %v, want %s %s", c.listen, ep, err, c.network, c.addr)
		}
	}
}

func TestStaleSocket(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	path := filepath.Join(dir, "d.sock")
	// Nothing there.
	if err := clearStaleSocket(path, log); err != nil {
		t.Fatal(err)
	}
	// A live listener: another daemon.
	ln, err := listen(endpoint{"unix", path})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	err = clearStaleSocket(path, log)
	if !errors.Is(err, errRunning) || err.Error() != "replayd already running on unix:"+path {
		t.Fatalf("live socket: %v", err)
	}
	// A dead socket file, as a SIGKILLed daemon leaves it.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatal("socket file gone; the test needs it to stay")
	}
	if err := clearStaleSocket(path, log); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale socket not removed: %v", err)
	}
	// A regular file is never removed.
	os.WriteFile(path, []byte("precious"), 0o600)
	if err := clearStaleSocket(path, log); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatal("regular file touched")
	}
}
