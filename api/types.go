package api

// RunSpec is the body of POST /v1/runs (create and start a run). An absent
// field means "the preset's or the daemon's default". Where zero is a
// meaningful value the field is a pointer or a slice, so absent (nil) and
// zero differ: seed 0; backward_from 0 (backward iterates from step 1);
// eval_every 0 (losses at the last step only); eval_size 0 (the whole
// split); reset_at [] (no resets, whatever the preset says). For the other
// fields zero is never valid and means absent.
type RunSpec struct {
	Name            string  `json:"name,omitempty"`
	Preset          string  `json:"preset,omitempty"`
	Dataset         string  `json:"dataset,omitempty"`   // fashion-mnist | regression-sin | regression-x2 | regression-abs | quadratic
	DataPath        string  `json:"data_path,omitempty"` // directory of the IDX files
	Model           string  `json:"model,omitempty"`     // mlp:500x5 | linear | scalar
	Init            string  `json:"init,omitempty"`      // he | lecun | glorot | torch
	Loss            string  `json:"loss,omitempty"`      // cross-entropy | mse | quadratic
	LR              float64 `json:"lr,omitempty"`
	Batch           int     `json:"batch,omitempty"`
	Steps           int     `json:"steps,omitempty"`
	Seed            *uint64 `json:"seed,omitempty"`
	Window          int     `json:"window,omitempty"`
	Strategy        string  `json:"strategy,omitempty"`     // window | sliding | full | memo
	ResetAt         []int   `json:"reset_at,omitzero"`      // nil: absent; []: none
	ResetFrom       string  `json:"reset_from,omitempty"`   // backward | forward
	ResetPolicy     string  `json:"reset_policy,omitempty"` // fixed | improve
	ResetHorizon    int     `json:"reset_horizon,omitempty"`
	BackwardFrom    *int    `json:"backward_from,omitempty"`
	EvalEvery       *int    `json:"eval_every,omitempty"`
	EvalSize        *int    `json:"eval_size,omitempty"`
	CheckpointEvery int     `json:"checkpoint_every,omitempty"`

	// The optimizer (DESIGN §5) with torch.optim's definitions; absent
	// (nil) and zero differ for the numeric settings. Defaults: optimizer
	// sgd; momentum 0.9 (not torch's 0, which would make momentum plain
	// SGD) and dampening 0 for momentum and nesterov; beta1 0.9, beta2
	// 0.999, eps 1e-8 for adam and adamw; weight_decay 0, adamw 0.01. A
	// setting that does not apply to the optimizer is refused by name. The
	// resolved spec of a run (RunStatus.Spec) carries every setting that
	// applies.
	Optimizer   string   `json:"optimizer,omitempty"` // sgd | momentum | nesterov | adam | adamw
	Momentum    *float64 `json:"momentum,omitempty"`
	Dampening   *float64 `json:"dampening,omitempty"`
	Beta1       *float64 `json:"beta1,omitempty"`
	Beta2       *float64 `json:"beta2,omitempty"`
	Eps         *float64 `json:"eps,omitempty"`
	WeightDecay *float64 `json:"weight_decay,omitempty"`

	// Fingerprint is which remote workers may compute the run's backward
	// jobs: "" (the default) only those whose fingerprint is the daemon's,
	// so that every stored number is bitwise reproducible; "any" every
	// worker whatever its BLAS kernel or CPU, and the run is then not
	// bitwise (RunStatus.Bitwise false; its remote results are not spot
	// checked, since honest machines differ in the last bits).
	Fingerprint string `json:"fingerprint,omitempty"` // "" | any
}

// FingerprintAny is RunSpec.Fingerprint for a run that accepts every
// worker's fingerprint.
const FingerprintAny = "any"

// Ptr returns a pointer to v, for the optional fields of RunSpec:
// RunSpec{EvalEvery: api.Ptr(0)}.
func Ptr[T any](v T) *T { return &v }

// AnchorInfo is a backward anchor: the step r and whether x_r is the forward
// or the backward iterate at r.
type AnchorInfo struct {
	Segment int    `json:"segment"`
	Step    int    `json:"step"`
	From    string `json:"from"` // forward | backward | init
}

// RunStatus is one run in GET /v1/runs and GET /v1/runs/{name}.
type RunStatus struct {
	Name         string     `json:"name"`
	State        string     `json:"state"` // running | paused | done | failed
	Reason       string     `json:"reason,omitempty"`
	Spec         RunSpec    `json:"spec"` // fully resolved
	Steps        int        `json:"steps"`
	ForwardStep  int        `json:"forward_step"`
	BackwardStep int        `json:"backward_step"` // backward frontier: every n ≤ it is done
	Anchor       AnchorInfo `json:"anchor"`
	Window       int        `json:"window"`
	Strategy     string     `json:"strategy"`
	OpsPerSec    float64    `json:"ops_per_sec"`
	ETASeconds   float64    `json:"eta_seconds"`
	ForwardLoss  *float64   `json:"forward_loss,omitempty"`
	BackwardLoss *float64   `json:"backward_loss,omitempty"`
	PendingReset []int      `json:"pending_resets,omitempty"`
	// Bitwise: the run is computed only by workers of the daemon's
	// fingerprint (false for a run with fingerprint "any").
	Bitwise bool `json:"bitwise"`
	// Waiting is why the backward jobs wait for a remote worker (none
	// connected, none of the daemon's fingerprint, or the run's data set
	// differs on every one), while the run is running and its backward
	// frontier is behind its forward step; "" otherwise.
	Waiting string `json:"waiting,omitempty"`
}

// RunList is the body of GET /v1/runs.
type RunList struct {
	Runs []RunStatus `json:"runs"`
}

// ResetRequest is the body of POST /v1/runs/{name}/reset.
type ResetRequest struct {
	At   int    `json:"at"`
	From string `json:"from,omitempty"` // backward (default) | forward
}

// Point is one row of a trajectory (GET /v1/runs/{name}/trajectory?kind=&from=&to=&every=),
// streamed as JSON lines (one Point per line).
type Point struct {
	Kind      string  `json:"kind"` // forward | backward
	Step      int     `json:"step"`
	Loss      float64 `json:"loss"`
	TestLoss  float64 `json:"test_loss"`
	TestAcc   float64 `json:"test_acc"`
	ParamNorm float64 `json:"param_norm"`
	StepDist  float64 `json:"step_dist"`
	Anchor    int     `json:"anchor"`  // anchor step r of the backward iterate; 0 for forward
	Segment   int     `json:"segment"` // anchor segment; 0 for forward
}

// VerifyReport is the body of POST /v1/runs/{name}/verify.
type VerifyReport struct {
	Run         string   `json:"run"`
	Checkpoints int      `json:"checkpoints"`
	Steps       int      `json:"steps"`
	OK          bool     `json:"ok"`
	Problems    []string `json:"problems,omitempty"`
	// Repaired lists the checkpoints recomputed by verify?repair=true.
	Repaired []int `json:"repaired,omitempty"`
}

// Error is the body of every 4xx/5xx answer: one line.
type Error struct {
	Error string `json:"error"`
}

// Event is one event of a run's stream (GET /v1/runs/{name}/events,
// Server-Sent Events: "id:" is ID, "event:" is Kind, "data:" is the Event as
// JSON). IDs are "<boot>-<seq>": seq increases with every event of the
// daemon, boot changes with every start of the daemon. A client that
// reconnects with the last ID it saw (Last-Event-ID, or ?since=) gets the
// events it missed; with no ID, one of an earlier daemon or one older than
// the events the daemon keeps, the first event is a snapshot.
type Event struct {
	ID   string `json:"id"`
	Run  string `json:"run"`
	Kind string `json:"kind"`
	// Fields are the event's values as in replayd's event log
	// (--events): anchor has segment, step, from, reason; failed has step
	// and reason; snapshot has why (connect | cursor | overflow).
	Fields map[string]string `json:"fields,omitempty"`
	// Status is the run's status, in snapshot, progress and state events.
	Status *RunStatus `json:"status,omitempty"`
}

// Kinds of Event. The ones named after the event log carry its fields.
const (
	EventSnapshot       = "snapshot"        // the run's status: first event, or a resync
	EventProgress       = "progress"        // forward step or backward frontier moved (rate-limited)
	EventState          = "state"           // paused or resumed, by request or by a full disk (fields: reason)
	EventCreated        = "created"         // the run was created
	EventAnchor         = "anchor"          // the backward anchor moved (a reset applied)
	EventResetScheduled = "reset-scheduled" // a reset of the spec, at creation
	EventResetRequested = "reset-requested" // a reset requested through the API
	EventAdaptive       = "adaptive"        // an adaptive reset decided
	EventDone           = "done"            // every iterate is stored
	EventFailed         = "failed"          // the run failed (fields step, reason)
	EventDeleted        = "deleted"         // the run was deleted: the stream ends
)

// State returns the run's state after ev, or "" when ev does not tell.
// A deleted run's state is "deleted".
func (ev Event) State() string {
	switch ev.Kind {
	case EventDone, EventFailed, EventDeleted:
		return ev.Kind
	}
	if ev.Status != nil {
		return ev.Status.State
	}
	return ""
}
