package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SocketName is the file name of replayd's default unix socket inside its
// data directory.
const SocketName = "replayd.sock"

// DefaultDataDir returns replayd's default data directory: $REPLAYD_DATA_DIR
// if set, else $XDG_STATE_HOME/replayd, else ~/.local/state/replayd. The
// daemon and the CLI both call it, so that their defaults agree.
func DefaultDataDir() (string, error) {
	if d := os.Getenv("REPLAYD_DATA_DIR"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "replayd"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("api: default data directory: set REPLAYD_DATA_DIR or XDG_STATE_HOME: %w", err)
	}
	return filepath.Join(home, ".local", "state", "replayd"), nil
}

// DefaultAddr returns the address replayctl talks to when none is given:
// $REPLAYD_ADDR if set, else the daemon's default socket
// "unix:<DefaultDataDir()>/replayd.sock".
func DefaultAddr() string {
	if a := os.Getenv("REPLAYD_ADDR"); a != "" {
		return a
	}
	dir, err := DefaultDataDir()
	if err != nil {
		// No home directory: a relative socket still gives a clear
		// "not running at …" error instead of a panic.
		dir = "."
	}
	return "unix:" + filepath.Join(dir, SocketName)
}

// Client talks to replayd's HTTP/JSON API. It is safe for concurrent use.
// Every method returns an *UnreachableError (errors.Is ErrUnreachable) when
// the daemon cannot be contacted and a *StatusError carrying the daemon's
// one-line message for a 4xx/5xx answer.
type Client struct {
	addr  string // as given, for messages
	base  string // URL prefix, e.g. "http://replayd" for a unix socket
	token string
	hc    *http.Client
	// BusyWait bounds how long a request keeps asking a saturated daemon
	// (503 with Retry-After, ErrBusy) again; 0 gives up at the first such
	// answer. NewClient sets DefaultBusyWait.
	BusyWait time.Duration
}

// DefaultBusyWait is a new Client's BusyWait.
const DefaultBusyWait = 2 * time.Minute

// dialTimeout bounds connecting, not requests: a trajectory stream or a
// verify may legitimately take long, and contexts bound those.
const dialTimeout = 5 * time.Second

// NewClient returns a client for the daemon at addr, which is "unix:/path",
// an absolute or ./relative socket path (or any path ending in ".sock"),
// "host:port", or an "http://" / "https://" URL. A non-empty token is sent as
// "Authorization: Bearer <token>".
func NewClient(addr, token string) *Client {
	c := &Client{addr: addr, token: token, BusyWait: DefaultBusyWait}
	tr := &http.Transport{
		Proxy:               nil, // the daemon is local; never go through $HTTP_PROXY
		MaxIdleConns:        4,
		IdleConnTimeout:     30 * time.Second,
		TLSHandshakeTimeout: dialTimeout,
	}
	d := &net.Dialer{Timeout: dialTimeout}
	if sock, ok := socketPath(addr); ok {
		c.base = "http://replayd"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", sock)
		}
	} else {
		tr.DialContext = d.DialContext
		switch {
		case strings.HasPrefix(addr, "http://"), strings.HasPrefix(addr, "https://"):
			c.base = strings.TrimRight(addr, "/")
		default:
			c.base = "http://" + addr
		}
	}
	c.hc = &http.Client{Transport: tr}
	return c
}

// socketPath reports whether addr names a unix socket and returns its path.
func socketPath(addr string) (string, bool) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		return p, true
	}
	if strings.HasPrefix(addr, "/") || strings.HasPrefix(addr, "./") || strings.HasPrefix(addr, "../") ||
		strings.HasSuffix(addr, ".sock") {
		return addr, true
	}
	return "", false
}

// Transport returns the client's round tripper and the URL prefix its
// requests go to ("http://replayd" for a unix socket), for a proxy in front
// of the daemon (replayctl ui). The token is not added by the transport.
func (c *Client) Transport() (http.RoundTripper, string) { return c.hc.Transport, c.base }

// Addr returns the address the client was created with.
func (c *Client) Addr() string { return c.addr }

// UnreachableError is returned when no daemon answers at Addr.
type UnreachableError struct {
	Addr string
	Err  error // the dial error
}

// Error is one line naming the address and how to start the daemon.
func (e *UnreachableError) Error() string {
	hint := "start it with `replayd`"
	if e.Addr != DefaultAddr() {
		hint = fmt.Sprintf("start it with `replayd --listen %s`", strings.TrimPrefix(e.Addr, "unix:"))
	}
	cause := ""
	if e.Err != nil {
		var se *os.SyscallError
		if errors.As(e.Err, &se) {
			cause = " (" + se.Err.Error() + ")"
		} else {
			cause = " (" + e.Err.Error() + ")"
		}
	}
	return fmt.Sprintf("replayd is not running at %s: %s, or pass --addr / set REPLAYD_ADDR%s", e.Addr, hint, cause)
}

// Unwrap returns the dial error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnreachable) true.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnreachable }

// StatusError is a 4xx/5xx answer from the daemon.
type StatusError struct {
	Code    int    // HTTP status
	Message string // the daemon's one-line api.Error message
	// RetryAfter is the daemon's Retry-After on a 503 for a saturated
	// backend (ErrBusy); 0 otherwise.
	RetryAfter time.Duration
}

// Error returns the daemon's message.
func (e *StatusError) Error() string { return e.Message }

// Is maps status codes onto the sentinels ErrNotFound (404), ErrInvalid
// (400, 413), ErrConflict (409) and ErrUnauthorized (401).
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == http.StatusNotFound
	case ErrInvalid:
		return e.Code == http.StatusBadRequest || e.Code == http.StatusRequestEntityTooLarge
	case ErrConflict:
		return e.Code == http.StatusConflict
	case ErrUnauthorized:
		return e.Code == http.StatusUnauthorized
	case ErrBusy:
		return e.Code == http.StatusServiceUnavailable && e.RetryAfter > 0
	}
	return false
}

// do sends one request and returns the response of a 2xx answer; the caller
// closes its body. Any other answer becomes a *StatusError.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any) (*http.Response, error) {
	return c.doHeader(ctx, method, path, query, body, nil)
}

// doHeader is do with extra request headers.
func (c *Client) doHeader(ctx context.Context, method, path string, query url.Values, body any, hdr http.Header) (*http.Response, error) {
	var enc []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("api: encode request: %w", err)
		}
		enc = b
	}
	// A saturated daemon (503 with Retry-After: every recomputation slot
	// busy) is asked again after the time it names, up to BusyWait in all:
	// a user's export or trajectory waits its turn instead of failing.
	deadline := time.Now().Add(c.BusyWait)
	for {
		resp, err := c.send(ctx, method, path, query, enc, body != nil, hdr)
		var se *StatusError
		if err == nil || !errors.As(err, &se) || !errors.Is(se, ErrBusy) {
			return resp, err
		}
		wait := se.RetryAfter
		if left := time.Until(deadline); left <= 0 {
			return nil, err
		} else if wait > left {
			wait = left
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// send is one attempt of doHeader.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, enc []byte, hasBody bool, hdr http.Header) (*http.Response, error) {
	var rd io.Reader
	if hasBody {
		rd = bytes.NewReader(enc)
	}
	body := rd
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, &UnreachableError{Addr: c.addr, Err: op.Err}
		}
		return nil, fmt.Errorf("api: %s %s at %s: %w", method, path, c.addr, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, readStatusError(resp)
}

// readStatusError turns a failed answer into a *StatusError with a one-line
// message: the api.Error body when there is one, else the first line of the
// body, else the status text.
func readStatusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e Error
	msg := ""
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	} else if line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n"); line != "" {
		msg = line
	} else {
		msg = fmt.Sprintf("replayd answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	msg = strings.Join(strings.Fields(msg), " ") // one line, whatever the server sent
	se := &StatusError{Code: resp.StatusCode, Message: msg}
	if resp.StatusCode == http.StatusServiceUnavailable {
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 {
			se.RetryAfter = time.Duration(min(n, 3600)) * time.Second
		}
	}
	return se
}

// getJSON performs a request and decodes a JSON answer into out.
func (c *Client) getJSON(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, method, path, nil, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("api: decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// runPath is the URL path of a run, with its name escaped.
func runPath(name string, rest ...string) string {
	p := "/v1/runs/" + url.PathEscape(name)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// Health checks GET /healthz.
func (c *Client) Health(ctx context.Context) error {
	resp, err := c.do(ctx, http.MethodGet, "/healthz", nil, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Runs lists every run (GET /v1/runs).
func (c *Client) Runs(ctx context.Context) (RunList, error) {
	var l RunList
	err := c.getJSON(ctx, http.MethodGet, "/v1/runs", nil, &l)
	return l, err
}

// CreateRun creates and starts a run (POST /v1/runs).
func (c *Client) CreateRun(ctx context.Context, spec RunSpec) (RunStatus, error) {
	var st RunStatus
	err := c.getJSON(ctx, http.MethodPost, "/v1/runs", spec, &st)
	return st, err
}

// Status returns one run (GET /v1/runs/{name}).
func (c *Client) Status(ctx context.Context, name string) (RunStatus, error) {
	var st RunStatus
	err := c.getJSON(ctx, http.MethodGet, runPath(name), nil, &st)
	return st, err
}

// Pause pauses a run (POST /v1/runs/{name}/pause).
func (c *Client) Pause(ctx context.Context, name string) (RunStatus, error) {
	var st RunStatus
	err := c.getJSON(ctx, http.MethodPost, runPath(name, "pause"), nil, &st)
	return st, err
}

// Resume resumes a paused run (POST /v1/runs/{name}/resume).
func (c *Client) Resume(ctx context.Context, name string) (RunStatus, error) {
	var st RunStatus
	err := c.getJSON(ctx, http.MethodPost, runPath(name, "resume"), nil, &st)
	return st, err
}

// Delete removes a run and all its data (DELETE /v1/runs/{name}).
func (c *Client) Delete(ctx context.Context, name string) error {
	return c.getJSON(ctx, http.MethodDelete, runPath(name), nil, nil)
}

// Reset moves the backward anchor of a run (POST /v1/runs/{name}/reset).
func (c *Client) Reset(ctx context.Context, name string, req ResetRequest) (RunStatus, error) {
	var st RunStatus
	err := c.getJSON(ctx, http.MethodPost, runPath(name, "reset"), req, &st)
	return st, err
}

// Verify runs the store's bitwise re-execution check (POST /v1/runs/{name}/verify).
func (c *Client) Verify(ctx context.Context, name string) (VerifyReport, error) {
	var rep VerifyReport
	err := c.getJSON(ctx, http.MethodPost, runPath(name, "verify"), nil, &rep)
	return rep, err
}

// Repair recomputes the run's missing checkpoints, then verifies it (POST
// /v1/runs/{name}/verify?repair=true).
func (c *Client) Repair(ctx context.Context, name string) (VerifyReport, error) {
	var rep VerifyReport
	err := c.getJSON(ctx, http.MethodPost, runPath(name, "verify")+"?repair=true", nil, &rep)
	return rep, err
}

// TrajectoryQuery selects the points of a trajectory. Zero fields are left
// to the daemon's defaults (kind both, the whole range, every point).
type TrajectoryQuery struct {
	Kind  string // forward | backward | both
	From  int
	To    int
	Every int
}

// values encodes q as URL query parameters.
func (q TrajectoryQuery) values() url.Values {
	v := url.Values{}
	if q.Kind != "" {
		v.Set("kind", q.Kind)
	}
	if q.From != 0 {
		v.Set("from", strconv.Itoa(q.From))
	}
	if q.To != 0 {
		v.Set("to", strconv.Itoa(q.To))
	}
	if q.Every != 0 {
		v.Set("every", strconv.Itoa(q.Every))
	}
	return v
}

// Trajectory streams the points of a run's trajectory (GET
// /v1/runs/{name}/trajectory), calling fn for each as it arrives; memory does
// not grow with the number of points. An error from fn stops the stream and
// is returned. A stream cut short by the daemon is an error, never a silently
// shorter trajectory. Values the daemon sent as null (JSON has no NaN: a
// regression's accuracy, a diverged loss) arrive as NaN.
func (c *Client) Trajectory(ctx context.Context, name string, q TrajectoryQuery, fn func(Point) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := c.do(ctx, http.MethodGet, runPath(name, "trajectory"), q.values(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		p, err := decodePointLine(line)
		var se *StatusError
		if errors.As(err, &se) {
			return se
		}
		if err != nil {
			return fmt.Errorf("api: trajectory of %s: bad line %q: %w", name, line, err)
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("api: trajectory of %s cut short: %w", name, err)
	}
	return nil
}

// Params returns the parameters of a run at a step of the forward or
// backward trajectory as a safetensors stream (GET
// /v1/runs/{name}/params?kind=&step=). The caller closes it.
func (c *Client) Params(ctx context.Context, name, kind string, step int) (io.ReadCloser, error) {
	return c.params(ctx, name, kind, step, url.Values{})
}

// StateParams is Params with the optimizer's state after θ
// (with_state=true; docs/protocol.md names its tensors).
func (c *Client) StateParams(ctx context.Context, name, kind string, step int) (io.ReadCloser, error) {
	return c.params(ctx, name, kind, step, url.Values{"with_state": {"true"}})
}

func (c *Client) params(ctx context.Context, name, kind string, step int, v url.Values) (io.ReadCloser, error) {
	v.Set("kind", kind)
	v.Set("step", strconv.Itoa(step))
	resp, err := c.do(ctx, http.MethodGet, runPath(name, "params"), v, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Batches returns the batch log of a run as a .npy int64 [steps, batch]
// stream (GET /v1/runs/{name}/batches). The caller closes it.
func (c *Client) Batches(ctx context.Context, name string) (io.ReadCloser, error) {
	resp, err := c.do(ctx, http.MethodGet, runPath(name, "batches"), nil, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Reconnection policy of Events: the delay before the first retry doubles
// up to eventsMaxBackoff; eventsRetries attempts in a row that bring no
// event (≈ 10 s) end the stream with the last error.
const (
	eventsBackoff    = 100 * time.Millisecond
	eventsMaxBackoff = 2 * time.Second
	eventsRetries    = 8
)

// errRunDeleted ends a stream after the run's "deleted" event.
var errRunDeleted = errors.New("api: run deleted")

// callbackError carries an error of Events' fn out of the stream reader.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// Events follows the event stream of a run (GET /v1/runs/{name}/events)
// after cursor ("" to start with a snapshot of the run's status), calling fn
// for each event in order. When the connection drops it reconnects with
// Last-Event-ID set to the last ID seen, so the daemon sends what was missed
// (or a snapshot, if it no longer has it or was restarted); it retries with
// backoff while the daemon is unreachable, answers 5xx or ends the stream,
// for about ten seconds without an event. Events returns fn's error as is
// (return a sentinel of your own to stop), nil after the run's "deleted"
// event, ctx's error when ctx is done, and a *StatusError for a 4xx answer
// (ErrNotFound: no such run).
func (c *Client) Events(ctx context.Context, name, cursor string, fn func(Event) error) error {
	backoff, failures := eventsBackoff, 0
	for {
		n, err := c.eventStream(ctx, name, cursor, func(ev Event) error {
			cursor = ev.ID
			return fn(ev)
		})
		var ce *callbackError
		var se *StatusError
		switch {
		case errors.As(err, &ce):
			return ce.err
		case errors.Is(err, errRunDeleted):
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &se) && se.Code < 500:
			return err
		}
		if n > 0 {
			backoff, failures = eventsBackoff, 0
		}
		if failures++; failures > eventsRetries {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		backoff = min(2*backoff, eventsMaxBackoff)
	}
}

// eventStream reads one connection's events; it returns how many it
// delivered and why it stopped (never nil).
func (c *Client) eventStream(ctx context.Context, name, cursor string, fn func(Event) error) (int, error) {
	hdr := http.Header{"Accept": {"text/event-stream"}}
	if cursor != "" {
		hdr.Set("Last-Event-ID", cursor)
	}
	resp, err := c.doHeader(ctx, http.MethodGet, runPath(name, "events"), nil, nil, hdr)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	rd := bufio.NewReaderSize(resp.Body, 64<<10)
	n := 0
	var id, kind string
	var data []byte
	for {
		line, err := readLine(rd)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, fmt.Errorf("api: event stream of %s cut short: %w", name, err)
		}
		if len(line) == 0 { // end of an event
			if len(data) > 0 {
				var ev Event
				if err := json.Unmarshal(data, &ev); err != nil {
					return n, fmt.Errorf("api: event stream of %s: bad event %q: %w", name, data, err)
				}
				if ev.ID == "" {
					ev.ID = id
				}
				if ev.Kind == "" {
					ev.Kind = kind
				}
				n++
				if err := fn(ev); err != nil {
					return n, &callbackError{err}
				}
				if ev.Kind == EventDeleted {
					return n, errRunDeleted
				}
			}
			id, kind, data = "", "", data[:0]
			continue
		}
		if line[0] == ':' { // a comment: heartbeat
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			id = string(value)
		case "event":
			kind = string(value)
		case "data":
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, value...)
		}
	}
}

// maxEventLine bounds one line of an event stream.
const maxEventLine = 1 << 20

// readLine returns the next line without its end (\n or \r\n).
func readLine(rd *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		part, err := rd.ReadSlice('\n')
		line = append(line, part...)
		if len(line) > maxEventLine {
			return nil, fmt.Errorf("line over %d bytes", maxEventLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return nil, err
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
		return line, nil
	}
}
