package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/export"
	"github.com/replay-sgd/replay/web"
)

// Backend is what the server needs from the scheduler (*scheduler.Scheduler
// implements it). Methods are called concurrently from many requests; the
// backend must be safe for that. Errors matching api.ErrNotFound,
// api.ErrInvalid, api.ErrConflict and api.ErrBusy (errors.Is) become 404,
// 400, 409 and 503 with Retry-After; any other error is a 500. A ctx is cancelled when the client goes away.
type Backend interface {
	Create(spec api.RunSpec) (api.RunStatus, error)
	List() []api.RunStatus
	Status(name string) (api.RunStatus, error)
	Pause(name string) (api.RunStatus, error)
	Resume(name string) (api.RunStatus, error)
	Delete(name string) error
	Reset(name string, req api.ResetRequest) (api.RunStatus, error)
	// Trajectory calls fn once per point, in step order; it stops with fn's
	// error. to ≤ 0 means "up to the latest step".
	Trajectory(ctx context.Context, name, kind string, from, to, every int, fn func(api.Point) error) error
	// Tensors returns θ of the forward or backward iterate at step as
	// the model's named tensors (names, shapes, data).
	Tensors(ctx context.Context, name, kind string, step int) ([]export.Tensor, error)
	// Batches returns the batch log as a rows×cols matrix, step 1 first.
	Batches(name string) (rows, cols int, idx []int64, err error)
	Verify(ctx context.Context, name string) (api.VerifyReport, error)
}

// StateBackend is an optional capability of a Backend (checked by type
// assertion): the iterate with the optimizer's state after θ, for the
// params endpoint's with_state=true.
type StateBackend interface {
	StateTensors(ctx context.Context, name, kind string, step int) ([]export.Tensor, error)
}

// DefaultMaxBodyBytes bounds request bodies (a RunSpec is well under 1 KiB).
const DefaultMaxBodyBytes = 1 << 20

// Options configures New. The zero value is usable: no auth, a discarding
// logger, a private Prometheus registry, DefaultMaxBodyBytes.
type Options struct {
	// Token, when not empty, is required as "Authorization: Bearer <Token>"
	// on every request, /healthz and /metrics included.
	Token string
	// Logger receives one line per failed request (5xx at error level, 4xx
	// at debug) and one debug line per request.
	Logger *slog.Logger
	// Registry is served at /metrics; the server adds its request counter
	// to it. The caller registers the scheduler's collectors (and the Go
	// and process collectors if wanted). Nil means a fresh registry.
	Registry *prometheus.Registry
	// MaxBodyBytes bounds request bodies; ≤ 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Heartbeat is how often an idle event stream gets a comment line;
	// ≤ 0 means DefaultHeartbeat.
	Heartbeat time.Duration
	// Workers, if set, lists the remote workers (GET /v1/workers);
	// nil: the daemon has none.
	Workers func() api.WorkerList
	// Models, if set, lists the registered external models (GET
	// /v1/models); nil: none.
	Models func() api.ModelList
}

// server holds the handler state; all fields are read-only after New.
type server struct {
	b         Backend
	log       *slog.Logger
	maxBody   int64
	requests  *prometheus.CounterVec
	heartbeat time.Duration
	workers   func() api.WorkerList
	models    func() api.ModelList
	blocks    *blockCache // forward series summaries (series_blocks.go)
}

// New returns the API handler over b. See the package doc for the error
// mapping and the routes in the README (and routes below).
func New(b Backend, opts Options) http.Handler {
	s := &server{b: b, log: opts.Logger, maxBody: opts.MaxBodyBytes, workers: opts.Workers, models: opts.Models, blocks: newBlockCache()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	s.heartbeat = opts.Heartbeat
	if s.heartbeat <= 0 {
		s.heartbeat = DefaultHeartbeat
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s.requests = registerCounter(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "replay_http_requests_total",
		Help: "HTTP requests answered, by route pattern and status code.",
	}, []string{"route", "code"}), s.log)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError),
	}))
	mux.HandleFunc("GET /v1/runs", s.listRuns)
	mux.HandleFunc("POST /v1/runs", s.createRun)
	mux.HandleFunc("GET /v1/runs/{name}", s.getRun)
	mux.HandleFunc("DELETE /v1/runs/{name}", s.deleteRun)
	mux.HandleFunc("POST /v1/runs/{name}/pause", s.pauseRun)
	mux.HandleFunc("POST /v1/runs/{name}/resume", s.resumeRun)
	mux.HandleFunc("POST /v1/runs/{name}/reset", s.resetRun)
	mux.HandleFunc("GET /v1/runs/{name}/trajectory", s.trajectory)
	mux.HandleFunc("GET /v1/runs/{name}/params", s.params)
	mux.HandleFunc("GET /v1/runs/{name}/batches", s.batches)
	mux.HandleFunc("POST /v1/runs/{name}/verify", s.verify)
	mux.HandleFunc("GET /v1/runs/{name}/events", s.events)
	mux.HandleFunc("GET /v1/events", s.allEvents)
	mux.HandleFunc("GET /v1/runs/{name}/series", s.series)
	mux.HandleFunc("GET /v1/workers", func(w http.ResponseWriter, _ *http.Request) {
		l := api.WorkerList{Workers: []api.WorkerStatus{}}
		if s.workers != nil {
			l = s.workers()
		}
		writeJSON(w, http.StatusOK, l)
	})
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, _ *http.Request) {
		l := api.ModelList{Models: []api.ModelInfo{}}
		if s.models != nil {
			l = s.models()
		}
		writeJSON(w, http.StatusOK, l)
	})
	// The catch-all answers unknown paths (404) and known paths with the
	// wrong method (405) in JSON; the mux's own answers are plain text.
	mux.Handle("/", s.notFound(mux))

	h := s.recoverer(mux)
	if opts.Token != "" {
		h = bearerAuth(opts.Token, h)
	}
	// The page is the same for everyone and holds no run data: it is
	// served without the token, and asks for it (see web/doc.go).
	h = withPage(h)
	h = browserGuard(h, opts.Token != "")
	// Unauthenticated requests are counted and logged too: observe is outermost.
	return s.observe(h)
}

// registerCounter registers c on reg, or reuses the counter already there
// (a second server on the same registry, as in tests).
func registerCounter(reg prometheus.Registerer, c *prometheus.CounterVec, log *slog.Logger) *prometheus.CounterVec {
	if err := reg.Register(c); err != nil {
		if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
			if prev, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return prev
			}
		}
		log.Warn("server: request counter not registered", "err", err)
	}
	return c
}

// withPage serves the web view at /ui/ (and redirects / there) in front of
// the API handler h.
func withPage(h http.Handler) http.Handler {
	page := web.Handler("/ui/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		get := r.Method == http.MethodGet || r.Method == http.MethodHead
		switch {
		case get && r.URL.Path == "/":
			http.Redirect(w, r, "/ui/", http.StatusFound)
		case get && strings.HasPrefix(r.URL.Path, "/ui/"):
			page.ServeHTTP(w, r)
		default:
			h.ServeHTTP(w, r)
		}
	})
}
