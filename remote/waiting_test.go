package remote

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/scheduler"
)

// hashedFamily is sleepFamily (with no sleep) whose data set hashes to
// hash: workers given different hashes play machines whose data differs.
type hashedFamily struct {
	sleepFamily
	hash string
}

func (f hashedFamily) DataHash(family.Spec, family.Data) (string, error) { return f.hash, nil }

var _ family.DataHasher = hashedFamily{}

// waitRig is an embedded nats-server and an Executor of fingerprint
// "test" with one open queue of a run whose data hash is "h1"; workers
// join with start.
type waitRig struct {
	t   *testing.T
	url string
	ex  *Executor
	q   scheduler.Queue
	wg  sync.WaitGroup
}

func newWaitRig(t *testing.T, fingerprint string) *waitRig {
	t.Helper()
	ex, url := startExecutor(t, Config{Fingerprint: "test"})
	cfg := ckpt.RunConfig{Name: "run", Model: "sleep", Dataset: "sleep", Batch: 1, Steps: 1000, Window: 4, Strategy: "window",
		CheckpointEvery: 1000, Dim: sleepDim, DataHash: "h1", Fingerprint: fingerprint}
	r := &waitRig{t: t, url: url, ex: ex}
	r.q = ex.OpenRemote(scheduler.ExecRun{Name: cfg.Name, Epoch: 1, Config: cfg, Inputs: fakeInputs{make([]float32, sleepDim)}, Flight: 2})
	t.Cleanup(r.q.Close)
	t.Cleanup(r.wg.Wait) // after the workers' contexts end (cleanups run last first)
	return r
}

// start runs a Worker of fingerprint fp whose data set hashes to hash
// until stop is called (or the test ends).
func (r *waitRig) start(name, fp, hash string) (stop func()) {
	r.t.Helper()
	w, err := NewWorker(WorkerConfig{URL: r.url, Name: name, Jobs: 1, Fingerprint: fp,
		Families: []family.Family{hashedFamily{hash: hash}}})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.t.Cleanup(cancel)
	done := make(chan struct{})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(done)
		_ = w.Run(ctx)
	}()
	return func() { cancel(); <-done }
}

// waitReason waits until Waiting of the run contains every want ("" for
// none: until it is empty) and returns it.
func (r *waitRig) waitReason(want ...string) string {
	r.t.Helper()
	var got string
	waitFor(r.t, "Waiting "+strings.Join(want, " … "), func() bool {
		got = r.ex.Waiting("run")
		if len(want) == 1 && want[0] == "" {
			return got == ""
		}
		for _, w := range want {
			if !strings.Contains(got, w) {
				return false
			}
		}
		return true
	})
	return got
}

// result waits for the run's next result.
func (r *waitRig) result() scheduler.Result {
	r.t.Helper()
	select {
	case res := <-r.q.Results():
		return res
	case <-time.After(hangGuard):
		r.t.Fatal("no result")
		return scheduler.Result{}
	}
}

// A run with no job out has nothing to wait for; once a job is queued and
// no worker is connected, the reason names the command that starts one
// (with the daemon's NATS URL); it clears when a worker that can take the
// job joins, and the job is computed.
func TestWaitingNoWorker(t *testing.T) {
	r := newWaitRig(t, "")
	if got := r.ex.Waiting("run"); got != "" {
		t.Errorf("Waiting with no job out: %q, want none", got)
	}
	if got := r.ex.Waiting("other"); got != "" {
		t.Errorf("Waiting of a run with no open loop: %q, want none", got)
	}
	r.q.Jobs() <- benchJob("run", 0, 4)
	got := r.waitReason("no remote worker connected", "replayd worker --nats "+r.url)
	if w := r.ex.Waits(); w["run"] != got || len(w) != 1 {
		t.Errorf("Waits %q: want only the run, with %q", w, got)
	}
	if n := gauge(t, r.ex, "replay_remote_runs_waiting", "reason", "no-worker"); n != 1 {
		t.Errorf("replay_remote_runs_waiting{reason=no-worker} %v, want 1", n)
	}
	r.start("good", "test", "h1")
	r.waitReason("")
	if n := gauge(t, r.ex, "replay_remote_runs_waiting", "reason", "no-worker"); n != 0 {
		t.Errorf("replay_remote_runs_waiting{reason=no-worker} %v once a worker joined, want 0", n)
	}
	if res := r.result(); res.Err != "" || res.Cancelled || res.Job.Step != 4 {
		t.Fatalf("result %+v: want the job computed", res)
	}
	if w := r.ex.Waits(); len(w) != 0 {
		t.Errorf("Waits %q once the job is computed: want none", w)
	}
}

// Workers of another fingerprint only: a bitwise run waits, and the reason
// says how many there are and what lets them compute it; a worker of the
// daemon's fingerprint joining clears it.
func TestWaitingOtherFingerprint(t *testing.T) {
	r := newWaitRig(t, "")
	r.start("other", "another-machine", "h1")
	r.q.Jobs() <- benchJob("run", 0, 4)
	r.waitReason(`no worker of the daemon's fingerprint "test" connected`, "(1 of another fingerprint", "--fingerprint any")
	if w := r.ex.Waits(); !strings.Contains(w["run"], "another fingerprint") {
		t.Errorf("Waits %q: want the run", w)
	}
	if n := gauge(t, r.ex, "replay_remote_runs_waiting", "reason", "fingerprint"); n != 1 {
		t.Errorf("replay_remote_runs_waiting{reason=fingerprint} %v, want 1", n)
	}
	r.start("same", "test", "h1")
	r.waitReason("")
	if res := r.result(); res.Err != "" || res.Cancelled {
		t.Fatalf("result %+v: want the job computed", res)
	}
}

// A run of fingerprint any does not wait for a worker of the daemon's
// fingerprint: one of another computes it.
func TestWaitingAnyFingerprint(t *testing.T) {
	r := newWaitRig(t, api.FingerprintAny)
	r.q.Jobs() <- benchJob("run", 0, 4)
	r.waitReason("no remote worker connected")
	r.start("other", "another-machine", "h1")
	r.waitReason("")
	if res := r.result(); res.Err != "" || res.Cancelled {
		t.Fatalf("result %+v: want the job computed by the worker of another fingerprint", res)
	}
}

// Every live worker refuses the run (its data set differs on each): the
// reason names them and the run's data hash, the workers list the run as
// refused, the metric counts it; a worker of another fingerprint does not
// hide that. A worker with the run's data joining clears it all, and the
// job is computed.
func TestWaitingRefused(t *testing.T) {
	r := newWaitRig(t, "")
	r.start("odd2", "test", "h2")
	r.start("odd1", "test", "h3")
	r.start("other", "another-machine", "h1")
	r.q.Jobs() <- benchJob("run", 0, 4)
	got := r.waitReason("no worker can take its jobs: its data set differs (or cannot be loaded) on every worker (odd1, odd2; 1 more of another fingerprint)",
		"start a worker with the run's data (data hash h1)")
	if w := r.ex.Waits(); w["run"] != got {
		t.Errorf("Waits %q: want the run with %q", w, got)
	}
	refuses := func() map[string][]string {
		m := map[string][]string{}
		for _, w := range r.ex.Workers() {
			m[w.Name] = w.RefusedRuns
		}
		return m
	}
	if m := refuses(); !slices.Equal(m["odd1"], []string{"run"}) || !slices.Equal(m["odd2"], []string{"run"}) || len(m["other"]) != 0 {
		t.Errorf("refused runs by worker %q: want odd1 and odd2 refusing run, other none", m)
	}
	waitFor(t, "replay_remote_runs_refused 1", func() bool { return gauge(t, r.ex, "replay_remote_runs_refused") == 1 })
	if n := gauge(t, r.ex, "replay_remote_runs_waiting", "reason", "refused"); n != 1 {
		t.Errorf("replay_remote_runs_waiting{reason=refused} %v, want 1", n)
	}

	stop := r.start("good", "test", "h1")
	r.waitReason("")
	if res := r.result(); res.Err != "" || res.Cancelled {
		t.Fatalf("result %+v: want the job computed by the good worker", res)
	}
	// The good worker gone, the next job waits again.
	stop()
	r.q.Jobs() <- benchJob("run", 1, 4)
	r.waitReason("its data set differs (or cannot be loaded) on every worker (odd1, odd2")
}

// gauge is the value of the executor's metric name, of the series with
// labels (name, value pairs).
func gauge(t *testing.T, ex *Executor, name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(ex)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				has := false
				for _, l := range m.GetLabel() {
					has = has || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !has {
					continue metrics
				}
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s%q", name, labels)
	return 0
}
