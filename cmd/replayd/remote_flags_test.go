package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// The remote-worker flags: --workers 0 only with remote workers, the
// embedded server and an existing one exclusive, bounds checked, and a
// non-loopback embedded server refused at start without a token.
func TestRemoteFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // "" = accepted
	}{
		{[]string{"--workers", "0", "--remote-workers"}, ""},
		{[]string{"--workers", "0", "--nats", "nats://127.0.0.1:4222"}, ""},
		{[]string{"--workers", "0"}, "--workers 0: must be in [1, 1024] (0 with remote workers)"},
		{[]string{"--remote-workers", "--nats", "nats://x:4222"}, "give one"},
		{[]string{"--remote-workers", "--verify-share", "1.5"}, "--verify-share 1.5"},
		{[]string{"--remote-workers", "--job-ack-wait", "10ms"}, "--job-ack-wait 10ms"},
		{[]string{"--remote-workers", "--job-max-deliver", "0"}, "--job-max-deliver 0"},
	} {
		_, err := parseFlags(c.args, io.Discard)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.args, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
	}
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := run([]string{"--data-dir", dir, "--remote-workers", "--nats-listen", "0.0.0.0:0"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "not a loopback address: set --auth-token") {
		t.Errorf("embedded server on 0.0.0.0 without a token: %v, want refused", err)
	}
}

// replayd worker: bad flags are one line and a non-zero exit, before any
// connection.
func TestWorkerFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "--nats URL is required"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--jobs", "0"}, "--jobs 0"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--name", "a b"}, "--name"},
		{[]string{"--nats", "nats://127.0.0.1:1", "extra"}, "unexpected argument"},
		{[]string{"--bogus"}, "unknown flag"},
	} {
		err := runWorker(c.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line containing %q", c.args, err, c.want)
		}
	}
}
