package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/replay-sgd/replay/api"
)

// endpoint is a parsed --listen address.
type endpoint struct {
	network string // "unix" or "tcp"
	addr    string // socket path or host:port
}

func (e endpoint) String() string {
	if e.network == "unix" {
		return "unix:" + e.addr
	}
	return e.addr
}

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes with the terminating NUL).
const maxSocketPath = 107

// parseListen resolves --listen: empty means the socket in dataDir;
// "unix:/p", an absolute or ./relative path, or a name ending in ".sock" is a
// unix socket (the same forms api.NewClient accepts); anything else is a TCP
// host:port, which must be loopback unless a token protects it.
func parseListen(listen, dataDir string, haveToken bool) (endpoint, error) {
	var path string
	switch {
	case listen == "":
		path = filepath.Join(dataDir, api.SocketName)
	case strings.HasPrefix(listen, "unix:"):
		path = strings.TrimPrefix(listen, "unix:")
	case strings.HasPrefix(listen, "/"), strings.HasPrefix(listen, "./"), strings.HasPrefix(listen, "../"),
		strings.HasSuffix(listen, ".sock"):
		path = listen
	default:
		return parseTCP(listen, haveToken)
	}
	if path == "" {
		return endpoint{}, fmt.Errorf("--listen %q: empty socket path", listen)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return endpoint{}, fmt.Errorf("--listen %q: %w", listen, err)
	}
	if len(abs) > maxSocketPath {
		return endpoint{}, fmt.Errorf("socket path %s is %d bytes, longer than the %d a unix socket allows: use --listen unix:/shorter/path",
			abs, len(abs), maxSocketPath)
	}
	return endpoint{network: "unix", addr: abs}, nil
}

func parseTCP(listen string, haveToken bool) (endpoint, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return endpoint{}, fmt.Errorf("--listen %q: want unix:/path, /path.sock or host:port", listen)
	}
	if port == "" {
		return endpoint{}, fmt.Errorf("--listen %q: missing port", listen)
	}
	if !haveToken {
		ok, why := isLoopback(host)
		if !ok {
			return endpoint{}, fmt.Errorf("--listen %q: %s; serving beyond this machine needs --auth-token or $REPLAYD_TOKEN", listen, why)
		}
	}
	return endpoint{network: "tcp", addr: listen}, nil
}

// isLoopback reports whether every address host stands for is a loopback
// one, and why not otherwise.
func isLoopback(host string) (bool, string) {
	if host == "" {
		return false, "an empty host listens on every interface"
	}
	if strings.EqualFold(host, "localhost") {
		return true, ""
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsLoopback() {
			return true, ""
		}
		return false, host + " is not a loopback address"
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false, fmt.Sprintf("cannot resolve %s to check that it is loopback", host)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false, fmt.Sprintf("%s resolves to %s, not a loopback address", host, ip)
		}
	}
	return true, ""
}

// errRunning reports another live daemon on the socket.
var errRunning = errors.New("replayd already running")

// clearStaleSocket makes the socket path free to listen on: nothing there is
// fine; a socket nobody answers on (a crashed daemon's) is removed; a socket
// that accepts connections means another daemon, and anything that is not a
// socket is left alone.
func clearStaleSocket(path string, log *slog.Logger) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket; remove it or choose another --listen", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("%w on unix:%s", errRunning, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("check socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	log.Info("removed a stale socket (a daemon stopped without cleaning up)", "path", path)
	return nil
}

// listen opens the endpoint (after clearStaleSocket). A unix socket is made 0600 (only its owner may
// talk to the daemon) and removed when the listener closes.
func listen(ep endpoint) (net.Listener, error) {
	if ep.network == "tcp" {
		ln, err := net.Listen("tcp", ep.addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", ep.addr, err)
		}
		return ln, nil
	}
	if err := os.MkdirAll(filepath.Dir(ep.addr), 0o700); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	ln, err := net.Listen("unix", ep.addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			// Another daemon won the race since the check.
			return nil, fmt.Errorf("%w on unix:%s", errRunning, ep.addr)
		}
		return nil, fmt.Errorf("listen on unix:%s: %w", ep.addr, err)
	}
	// The socket is created with the umask's mode; until the chmod it sits
	// in a 0700 data directory by default, and a custom directory is the
	// user's to protect.
	if err := os.Chmod(ep.addr, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod socket %s: %w", ep.addr, err)
	}
	return ln, nil
}
