package remote

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Embedded is a nats-server with JetStream running inside the daemon.
type Embedded struct {
	ns *server.Server
}

// StartEmbedded starts nats-server on listen (host:port; port 0 picks a
// free one) with JetStream storing under storeDir, requiring token from
// clients when it is not empty. Any non-loopback address needs a token.
func StartEmbedded(listen, storeDir, token string) (*Embedded, error) {
	host, portS, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("--nats-listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portS)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("--nats-listen %q: bad port", listen)
	}
	if token == "" && !isLoopback(host) {
		return nil, fmt.Errorf("--nats-listen %s is not a loopback address: set --auth-token (workers present it with --token)", listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "replayd", Host: host, Port: port,
		JetStream: true, StoreDir: storeDir,
		Authorization: token,
		NoSigs:        true, NoLog: true,
		MaxPayload: 1 << 20,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS server on %s: not ready after 30s", listen)
	}
	return &Embedded{ns: ns}, nil
}

// URL is the server's client URL.
func (e *Embedded) URL() string { return e.ns.ClientURL() }

// Shutdown stops the server and waits for it.
func (e *Embedded) Shutdown() {
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
