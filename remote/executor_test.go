package remote

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/scheduler"
)

// hangGuard only turns a hang into a failure.
const hangGuard = time.Minute

// fakeInputs gives every anchor start and checkpoint as the same vector.
type fakeInputs struct{ v []float32 }

func (f fakeInputs) AnchorStart(string, int) ([]float32, error) { return f.v, nil }
func (f fakeInputs) NearestCheckpoint(_ string, k int, dst []float32) (int, error) {
	copy(dst, f.v)
	return k, nil
}

// harness is a real nats-server, an Executor on it with one open queue,
// and a test-side connection playing a worker.
type harness struct {
	t  *testing.T
	ex *Executor
	q  scheduler.Queue
	js jetstream.JetStream
}

// startExecutor starts an embedded nats-server and an Executor of cfg on
// it (cfg.URL is the server's), both stopped at tb's cleanup; it returns
// the executor and the server's URL.
func startExecutor(tb testing.TB, cfg Config) (*Executor, string) {
	tb.Helper()
	emb, err := StartEmbedded("127.0.0.1:0", tb.TempDir(), "")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(emb.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cfg.URL = emb.URL()
	ex, err := Dial(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(ex.Close)
	return ex, emb.URL()
}

func newHarness(t *testing.T, maxDeliver int) *harness {
	t.Helper()
	ex, url := startExecutor(t, Config{AckWait: time.Second, MaxDeliver: maxDeliver, Fingerprint: "test"})
	q := ex.OpenRemote(scheduler.ExecRun{Name: "run", Epoch: 1, Config: ckpt.RunConfig{Name: "run", Dim: 3},
		Inputs: fakeInputs{[]float32{1, 2, 3}}, Flight: 4})
	t.Cleanup(q.Close)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, ex: ex, q: q, js: js}
}

// fetchJob pulls one job message as a worker of the daemon's fingerprint.
func (h *harness) fetchJob() (jetstream.Msg, jobMsg) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	// The executor makes the consumer before it publishes the run's
	// first job.
	var cons jetstream.Consumer
	waitFor(h.t, "the jobs' consumer", func() bool {
		c, err := h.js.Consumer(ctx, jobStream, consumerName(FingerprintID("test"), ""))
		cons = c
		return err == nil
	})
	// A pull right after the consumer appeared may find no responder yet
	// (seen under -race on a loaded machine): pull again until the guard.
	var last error
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchContext(ctx))
		if err != nil {
			h.t.Fatal(err)
		}
		// Fetch(1): the channel yields at most one message, then closes.
		if m, ok := <-batch.Messages(); ok {
			var jm jobMsg
			if err := msgpack.Unmarshal(m.Data(), &jm); err != nil {
				h.t.Fatal(err)
			}
			return m, jm
		}
		last = batch.Error()
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("no job message: %v", last)
	return nil, jobMsg{}
}

func (h *harness) result() scheduler.Result {
	h.t.Helper()
	select {
	case res := <-h.q.Results():
		return res
	case <-time.After(hangGuard):
		h.t.Fatal("no result")
		return scheduler.Result{}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, hangGuard)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var testJob = scheduler.Job{Run: "run", Generation: 1 << 32, Segment: 0, AnchorStep: 0, Step: 5, StartStep: 0}

// A result delivered twice (a worker killed between publishing it and
// acking its job) reaches the loop once and is counted as a duplicate;
// its vector comes through the object store, the input by content hash.
func TestDuplicateResultDropped(t *testing.T) {
	h := newHarness(t, 5)
	h.q.Jobs() <- testJob
	m, jm := h.fetchJob()
	if jm.Job != testJob || jm.Input != inputName(encodeVec([]float32{1, 2, 3})) {
		t.Fatalf("job message %+v: want the job and its anchor start by content hash", jm)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	obj, err := h.js.ObjectStore(ctx, vectorBucket)
	if err != nil {
		t.Fatal(err)
	}
	theta := []float32{4, 5, 6}
	b := encodeVec(theta)
	name := resultName(testJob.ID(), b)
	// Put once: a second put of the name while the executor reads the
	// first would make that read fail (then retried, and the count of
	// results would depend on timing).
	if _, err := obj.PutBytes(ctx, name, b); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		data, _ := msgpack.Marshal(resultMsg{Job: testJob, Theta: name, Worker: "w", Applied: 5})
		if _, err := h.js.Publish(ctx, resultSubject+".x", data); err != nil {
			t.Fatal(err)
		}
	}
	_ = m.Ack()
	res := h.result()
	if res.Job != testJob || len(res.Theta) != 3 || res.Theta[0] != 4 || res.Theta[2] != 6 || res.Applied != 5 {
		t.Fatalf("result %+v", res)
	}
	waitFor(t, "second result counted", func() bool { return h.ex.Stats().Duplicates == 1 })
	select {
	case res := <-h.q.Results():
		t.Fatalf("duplicate delivered: %+v", res)
	default:
	}
	if st := h.ex.Stats(); st.Results != 2 || st.Queued != 1 {
		t.Errorf("stats %+v: want 2 results, 1 queued", st)
	}
	waitFor(t, "result vector deleted once delivered", func() bool {
		_, err := obj.GetInfo(ctx, name)
		return err != nil
	})
}

// A job that exhausts its deliveries without a result fails the run: the
// loop gets a Result with the reason.
func TestMaxDeliveriesFailsJob(t *testing.T) {
	h := newHarness(t, 2)
	h.q.Jobs() <- testJob
	for range 2 {
		h.fetchJob() // never acked: redelivered after AckWait (1 s)
	}
	// Workers keep pulling: the server notices the exhausted message when
	// it would deliver it again.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		cons, err := h.js.Consumer(ctx, jobStream, consumerName(FingerprintID("test"), ""))
		if err != nil {
			return
		}
		for ctx.Err() == nil {
			if b, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second)); err == nil {
				for range b.Messages() {
				}
			}
		}
	}()
	res := h.result()
	if res.Job != testJob || !strings.Contains(res.Err, "delivered 2 times") {
		t.Fatalf("result %+v: want the job failed after 2 deliveries", res)
	}
	if st := h.ex.Stats(); st.Dead != 1 {
		t.Errorf("stats %+v: want 1 dead", st)
	}
}

// Cancel hands the loop its jobs of older generations back Cancelled at
// once, with no worker to answer (the loop waits for them at a rollback
// and at its stop); a worker's late result of such a job is a duplicate.
func TestCancelReturnsPendingJobs(t *testing.T) {
	h := newHarness(t, 5)
	h.q.Jobs() <- testJob
	waitFor(t, "job published", func() bool { return h.ex.Stats().Queued == 1 })
	h.q.Cancel(testJob.Generation + 1)
	res := h.result()
	if res.Job != testJob || !res.Cancelled {
		t.Fatalf("result %+v: want the job back cancelled", res)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	data, _ := msgpack.Marshal(resultMsg{Job: testJob, Worker: "late", Applied: 5})
	if _, err := h.js.Publish(ctx, resultSubject+".x", data); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "late result counted", func() bool { return h.ex.Stats().Duplicates == 1 })
	select {
	case res := <-h.q.Results():
		t.Fatalf("late result delivered: %+v", res)
	default:
	}
}

// A small result comes inside its message (no object put, get and
// delete: the coordinator's cost per job, BenchmarkCoordinator) and is
// delivered as one through the object store would be.
func TestInlineResult(t *testing.T) {
	h := newHarness(t, 5)
	h.q.Jobs() <- testJob
	m, _ := h.fetchJob()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	data, _ := msgpack.Marshal(resultMsg{Job: testJob, Vec: encodeVec([]float32{7, 8, 9}), Worker: "w", Applied: 5})
	if _, err := h.js.Publish(ctx, resultSubject+".x", data); err != nil {
		t.Fatal(err)
	}
	_ = m.Ack()
	res := h.result()
	if res.Job != testJob || len(res.Theta) != 3 || res.Theta[0] != 7 || res.Theta[2] != 9 || res.Applied != 5 {
		t.Fatalf("result %+v", res)
	}
}
