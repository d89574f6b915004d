package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/export"
	"github.com/replay-sgd/replay/internal/echo"
)

// healther is the optional capability behind /healthz: a backend that can
// tell it cannot write (a full disk) answers 503 with the reason. The
// daemon still serves reads.
type healther interface {
	Health() error
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if h, ok := s.b.(healther); ok {
		if err := h.Health(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "unhealthy: "+oneLine(err.Error())+"\n")
			return
		}
	}
	io.WriteString(w, "ok\n")
}

func (s *server) listRuns(w http.ResponseWriter, _ *http.Request) {
	// finiteStatuses also turns nil into [] ("runs": [] rather than null).
	runs := finiteStatuses(s.b.List())
	writeJSON(w, http.StatusOK, api.RunList{Runs: runs})
}

func (s *server) createRun(w http.ResponseWriter, r *http.Request) {
	var spec api.RunSpec
	if err := s.decode(w, r, &spec); err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.b.Create(spec)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/runs/"+st.Name)
	writeJSON(w, http.StatusCreated, finiteStatus(st))
}

func (s *server) getRun(w http.ResponseWriter, r *http.Request) {
	s.status(w, r, s.b.Status)
}

func (s *server) pauseRun(w http.ResponseWriter, r *http.Request) {
	s.status(w, r, s.b.Pause)
}

func (s *server) resumeRun(w http.ResponseWriter, r *http.Request) {
	s.status(w, r, s.b.Resume)
}

// status answers with the api.RunStatus that op returns for the run named
// in the path.
func (s *server) status(w http.ResponseWriter, r *http.Request, op func(string) (api.RunStatus, error)) {
	st, err := op(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, finiteStatus(st))
}

func (s *server) deleteRun(w http.ResponseWriter, r *http.Request) {
	if err := s.b.Delete(r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	s.blocks.drop(r.PathValue("name")) // its forward series summaries (series_blocks.go)
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) resetRun(w http.ResponseWriter, r *http.Request) {
	var req api.ResetRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.At < 0 {
		s.fail(w, r, fmt.Errorf("%w: reset step %d is negative", errBadRequest, req.At))
		return
	}
	st, err := s.b.Reset(r.PathValue("name"), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, finiteStatus(st))
}

// repairer is the optional capability behind verify?repair=true.
type repairer interface {
	Repair(ctx context.Context, name string) (api.VerifyReport, error)
}

func (s *server) verify(w http.ResponseWriter, r *http.Request) {
	var (
		rep api.VerifyReport
		err error
	)
	switch v := r.URL.Query().Get("repair"); v {
	case "", "false":
		rep, err = s.b.Verify(r.Context(), r.PathValue("name"))
	case "true":
		rp, ok := s.b.(repairer)
		if !ok {
			err = fmt.Errorf("%w: this backend cannot repair", errBadRequest)
			break
		}
		rep, err = rp.Repair(r.Context(), r.PathValue("name"))
	default:
		err = fmt.Errorf("%w: repair=%q, want true|false", errBadRequest, echo.Clip(v))
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// flushEvery bounds how long points wait in the buffer of a trajectory
// stream: a slow producer (a run still training) still reaches the client.
const flushEvery = 200 * time.Millisecond

func (s *server) trajectory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kind, err := enumParam(q.Get("kind"), "both", "forward", "backward", "both")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	from, err1 := intParam(q.Get("from"), "from", 0, 0)
	to, err2 := intParam(q.Get("to"), "to", 0, 0)
	every, err3 := intParam(q.Get("every"), "every", 1, 1)
	if err := errors.Join(err1, err2, err3); err != nil {
		s.fail(w, r, err)
		return
	}
	if q.Get("to") != "" && to < from {
		s.fail(w, r, fmt.Errorf("%w: to=%d is before from=%d", errBadRequest, to, from))
		return
	}
	if from > 0 {
		// A start past the run's last step is a mistake, not an empty
		// answer (a start past the forward step so far is just early).
		st, err := s.b.Status(r.PathValue("name"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if from > st.Steps {
			s.fail(w, r, fmt.Errorf("%w: from=%d is beyond the %d steps of run %q", errBadRequest, from, st.Steps, st.Name))
			return
		}
	}

	// The header goes out with the first point, so that an error before it
	// (unknown run, bad range) still gets a proper status and JSON body.
	rc := http.NewResponseController(w)
	bw := bufio.NewWriterSize(w, 32<<10)
	var line []byte
	started := false
	lastFlush := time.Now()
	err = s.b.Trajectory(r.Context(), r.PathValue("name"), kind, from, to, every, func(p api.Point) error {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		line = append(api.AppendPointJSON(line[:0], p), '\n')
		if _, err := bw.Write(line); err != nil {
			return err
		}
		if time.Since(lastFlush) >= flushEvery {
			lastFlush = time.Now()
			if err := bw.Flush(); err != nil {
				return err
			}
			if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return err
			}
		}
		return r.Context().Err()
	})
	if err != nil {
		if !started {
			s.fail(w, r, err)
			return
		}
		if isClientGone(r) {
			panic(http.ErrAbortHandler)
		}
		s.log.Error("server: trajectory stream failed", "path", r.URL.Path, "err", err)
		// A last line says why (api.Client reports it), then the connection
		// is cut: a cleanly terminated stream would look complete.
		b, _ := json.Marshal(api.Error{Error: oneLine(err.Error())})
		bw.Write(append(b, '\n'))
		if bw.Flush() == nil {
			rc.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	if !started {
		// An empty range is a valid, empty stream.
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		return
	}
	if err := bw.Flush(); err != nil && !isClientGone(r) {
		s.log.Debug("server: trajectory flush failed", "err", err)
	}
}

func (s *server) params(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kind, err := enumParam(q.Get("kind"), "", "forward", "backward")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if q.Get("step") == "" {
		s.fail(w, r, fmt.Errorf("%w: query parameter step is required", errBadRequest))
		return
	}
	step, err := intParam(q.Get("step"), "step", 0, 0)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	withState, err := enumParam(q.Get("with_state"), "false", "false", "true")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var tensors []export.Tensor
	if withState == "true" {
		// θ and the optimizer's state (names by docs/protocol.md's
		// layout rule), for backends that have it.
		sb, ok := s.b.(StateBackend)
		if !ok {
			s.fail(w, r, fmt.Errorf("%w: with_state: this daemon does not export optimizer state", errBadRequest))
			return
		}
		tensors, err = sb.StateTensors(r.Context(), r.PathValue("name"), kind, step)
	} else {
		tensors, err = s.b.Tensors(r.Context(), r.PathValue("name"), kind, step)
	}
	if err == nil {
		err = checkTensors(tensors)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Encoded in memory first (a few MB at most) so that an encoding error
	// is still a 500 and the client gets a Content-Length.
	var buf bytes.Buffer
	if err := export.WriteSafetensors(&buf, tensors); err != nil {
		s.fail(w, r, fmt.Errorf("encode safetensors: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.Header().Set("Content-Disposition",
		fmt.Sprintf(`attachment; filename="%s-%s-%d.safetensors"`, sanitize(r.PathValue("name")), kind, step))
	if _, err := buf.WriteTo(w); err != nil && !isClientGone(r) {
		s.log.Debug("server: params write failed", "err", err)
	}
}

// checkTensors rejects what a backend should never return: no tensor, or
// one whose data does not fill its shape.
func checkTensors(ts []export.Tensor) error {
	if len(ts) == 0 {
		return errors.New("server: backend returned no tensor")
	}
	for _, t := range ts {
		n := 1
		for _, d := range t.Shape {
			n *= d
		}
		if n != len(t.Data) {
			return fmt.Errorf("server: backend returned tensor %s of shape %v with %d values", t.Name, t.Shape, len(t.Data))
		}
	}
	return nil
}

func (s *server) batches(w http.ResponseWriter, r *http.Request) {
	rows, cols, idx, err := s.b.Batches(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if rows < 0 || cols < 0 || len(idx) != rows*cols {
		s.fail(w, r, fmt.Errorf("server: backend returned %d indices for a %d×%d batch log", len(idx), rows, cols))
		return
	}
	var buf bytes.Buffer
	if err := export.WriteNpyInt64(&buf, rows, cols, idx); err != nil {
		s.fail(w, r, fmt.Errorf("encode npy: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.Header().Set("Content-Disposition",
		fmt.Sprintf(`attachment; filename="%s-batches.npy"`, sanitize(r.PathValue("name"))))
	if _, err := buf.WriteTo(w); err != nil && !isClientGone(r) {
		s.log.Debug("server: batches write failed", "err", err)
	}
}

// decode reads one JSON value of the request body into v, strictly: unknown
// fields, trailing data, an empty body and a body over the limit are errors.
// The Content-Type is not checked: `curl -d '{…}'` sends a form type, and
// the body has to be valid JSON anyway.
//
// Field names must match exactly: encoding/json matches them without case
// ("Steps" would set steps), so the keys are checked against the JSON names
// of v's fields first (exactKeys).
func (s *server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fmt.Errorf("%w: over %d bytes", errTooLarge, mbe.Limit)
	}
	if err != nil {
		return fmt.Errorf("%w: read body: %w", errBadRequest, err)
	}
	if err := exactKeys(body, reflect.TypeOf(v)); err != nil {
		return fmt.Errorf("%w: %w", errBadRequest, err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		// Exactly one value: anything after it but white space is an error.
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
			if terr != nil && !isSyntax(terr) {
				err = terr
			}
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: empty body, want a JSON object", errBadRequest)
	default:
		return fmt.Errorf("%w: invalid JSON body: %s", errBadRequest, oneLine(err.Error()))
	}
}

// exactKeys checks that every key of the JSON object in body is exactly
// the JSON name of a field of t (a struct or a pointer to one), recursing
// into fields that are structs. Anything that is not an object is left to
// the decoder, which reports it.
func exactKeys(body []byte, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil || obj == nil {
		return nil
	}
	fields := map[string]reflect.Type{}
	folded := map[string]string{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
		folded[strings.ToLower(name)] = name
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ft, ok := fields[k]
		if !ok {
			if want, ok := folded[strings.ToLower(k)]; ok {
				return fmt.Errorf("unknown field %q (field names are case-sensitive: %q)", echo.Clip(k), want)
			}
			return fmt.Errorf("unknown field %q", echo.Clip(k))
		}
		if err := exactKeys(obj[k], ft); err != nil {
			return fmt.Errorf("in %q: %w", k, err)
		}
	}
	return nil
}

func isSyntax(err error) bool {
	var se *json.SyntaxError
	return errors.As(err, &se)
}

// enumParam checks a query value against the allowed ones; empty means def
// (an empty def makes the parameter required).
func enumParam(v, def string, allowed ...string) (string, error) {
	if v == "" {
		v = def
	}
	for _, a := range allowed {
		if v == a {
			return v, nil
		}
	}
	if v == "" {
		return "", fmt.Errorf("%w: query parameter kind is required (%s)", errBadRequest, strings.Join(allowed, "|"))
	}
	return "", fmt.Errorf("%w: kind=%q, want %s", errBadRequest, echo.Clip(v), strings.Join(allowed, "|"))
}

// intParam parses a non-negative decimal query value ≥ min; empty means def.
func intParam(v, name string, def, min int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q is not an integer", errBadRequest, name, echo.Clip(v))
	}
	if n < min {
		return 0, fmt.Errorf("%w: %s=%d, want ≥ %d", errBadRequest, name, n, min)
	}
	return n, nil
}

// fail answers err as a one-line api.Error with the status errorStatus
// gives; 5xx answers are logged with the error.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client is gone: nobody reads the answer, nothing to log.
		return
	}
	code := errorStatus(err)
	msg := oneLine(err.Error())
	if code == http.StatusServiceUnavailable && errors.Is(err, api.ErrBusy) {
		// Saturated, not stopping: the client may come back soon.
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	if code >= 500 {
		s.log.Error("server: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		s.log.Debug("server: request rejected", "method", r.Method, "path", r.URL.Path, "status", code, "err", msg)
	}
	writeError(w, code, msg)
}

// errorStatus maps an error to its HTTP status. A cancelled context while
// the client is still there means the backend is stopping (503).
func errorStatus(err error) int {
	switch {
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errBadRequest), errors.Is(err, api.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, api.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, api.ErrConflict), errors.Is(err, api.ErrCorrupt):
		// A damaged record conflicts with the request; the body names it.
		return http.StatusConflict
	case errors.Is(err, api.ErrNoSpace):
		return http.StatusInsufficientStorage
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, api.ErrBusy):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// retryAfterSeconds is the Retry-After of a 503 for a saturated backend
// (api.ErrBusy): a recomputation takes from milliseconds to seconds.
const retryAfterSeconds = 1

func isClientGone(r *http.Request) bool {
	return r.Context().Err() != nil
}

// maxErrorBytes caps an error body's message: whatever a backend puts in an
// error (a client's string, a store's dump of a record), the answer stays
// one short line.
const maxErrorBytes = 1 << 10

// writeError writes the one-line JSON error body.
func writeError(w http.ResponseWriter, code int, msg string) {
	msg = oneLine(msg)
	if len(msg) > maxErrorBytes {
		cut := maxErrorBytes
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	writeJSON(w, code, api.Error{Error: msg})
}

// writeJSON writes v as one line of JSON. HTML escaping is off: messages
// such as "mlp:<widths>" stay readable with curl.
func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // Encode ends the line with '\n'
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only a bug can get here (the api types always marshal, NaN aside).
		code = http.StatusInternalServerError
		buf.Reset()
		enc.Encode(api.Error{Error: oneLine("encode answer: " + err.Error())})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// oneLine folds a message to a single line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// sanitize keeps a run name safe inside a quoted header value.
func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == '"' || r == '\\' || r > 0x7e {
			return '_'
		}
		return r
	}, name)
}
