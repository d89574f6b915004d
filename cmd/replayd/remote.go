package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/remote"
	"github.com/replay-sgd/replay/scheduler"
)

// remoteConfig is the daemon's remote-worker flags.
type remoteConfig struct {
	embedded   bool   // --remote-workers: start nats-server in-process
	url        string // --nats: an existing server instead
	listen     string // --nats-listen
	ackWait    time.Duration
	maxDeliver int
	verify     float64
}

// natsDirName is the embedded server's JetStream store inside the data
// directory.
const natsDirName = "nats"

// natsURLFile, in the data directory, holds the embedded server's URL.
const natsURLFile = "nats-url"

func addRemoteFlags(fs *pflag.FlagSet, c *remoteConfig) {
	fs.BoolVar(&c.embedded, "remote-workers", false, "start an embedded NATS server with JetStream (store under the data directory) and hand backward jobs to replayd worker processes")
	fs.StringVar(&c.url, "nats", "", "hand backward jobs to workers through this existing NATS server with JetStream (nats://host:port; --auth-token is presented to it)")
	fs.StringVar(&c.listen, "nats-listen", "127.0.0.1:4222", "the embedded NATS server's address (a non-loopback one requires --auth-token)")
	fs.DurationVar(&c.ackWait, "job-ack-wait", remote.DefaultAckWait, "how long a remote job may go without a heartbeat before it is given to another worker")
	fs.Float64Var(&c.verify, "verify-share", 0.02, "share of remote results re-executed by the daemon and compared bitwise (besides each worker's first); a mismatch quarantines the worker")
	fs.IntVar(&c.maxDeliver, "job-max-deliver", remote.DefaultMaxDeliver, "how many times a remote job is delivered before its run fails")
}

// enabled reports whether jobs go to remote workers.
func (c remoteConfig) enabled() bool { return c.embedded || c.url != "" }

func (c remoteConfig) validate() []error {
	var errs []error
	if c.embedded && c.url != "" {
		errs = append(errs, errors.New("--remote-workers and --nats: give one (the embedded server, or an existing one)"))
	}
	if c.ackWait < time.Second {
		errs = append(errs, fmt.Errorf("--job-ack-wait %v: must be ≥ 1s", c.ackWait))
	}
	if c.verify < 0 || c.verify > 1 {
		errs = append(errs, fmt.Errorf("--verify-share %v: must be in [0, 1]", c.verify))
	}
	if c.maxDeliver < 1 {
		errs = append(errs, fmt.Errorf("--job-max-deliver %d: must be ≥ 1", c.maxDeliver))
	}
	return errs
}

// startRemote starts the embedded server if asked and connects the
// executor; stop undoes both (after the scheduler has stopped). With no
// remote flag it returns nil and a no-op stop.
func startRemote(cfg config, fams []family.Family, log *slog.Logger) (ex *remote.Executor, stop func(), err error) {
	rc := cfg.remote
	if !rc.enabled() {
		return nil, func() {}, nil
	}
	// What is started is stopped in reverse order: by stop, or here on a
	// failure of a later step.
	var undo []func()
	stop = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	fail := func(err error) (*remote.Executor, func(), error) {
		stop()
		return nil, nil, err
	}
	url := rc.url
	if rc.embedded {
		emb, err := remote.StartEmbedded(rc.listen, filepath.Join(cfg.dataDir, natsDirName), cfg.token)
		if err != nil {
			return nil, nil, err
		}
		undo = append(undo, emb.Shutdown)
		url = emb.URL()
		// Workers on this machine (and tests) find the address here, also
		// when --nats-listen chose the port (":0").
		if err := os.WriteFile(filepath.Join(cfg.dataDir, natsURLFile), []byte(url+"\n"), 0o600); err != nil {
			return fail(fmt.Errorf("write %s: %w", natsURLFile, err))
		}
		log.Info("embedded NATS server started", "nats_url", url)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	local := localWorkerName()
	ex, err = remote.Dial(ctx, remote.Config{URL: url, Token: cfg.token, AckWait: rc.ackWait, MaxDeliver: rc.maxDeliver,
		VerifyShare: rc.verify, DataDir: cfg.datasetDir, Logger: log, Families: fams, Trusted: []string{local}})
	if err != nil {
		return fail(err)
	}
	undo = append(undo, ex.Close)
	log.Info("backward jobs go to remote workers", "nats_url", url, "fingerprint", remote.Fingerprint())
	// --workers N: the daemon computes too, as one worker of N slots on
	// the same queue, so that whoever is free takes the next job (its
	// results pass through the object store as a remote worker's do, and
	// are not spot checked: Trusted).
	if cfg.workers > 0 {
		w, err := remote.NewWorker(remote.WorkerConfig{URL: url, Token: cfg.token, Name: local, Jobs: cfg.workers,
			DataPath: cfg.datasetDir, MemoBudget: scheduler.DefaultMemoBudget, Logger: log.With("worker", local), Families: fams})
		if err != nil {
			return fail(fmt.Errorf("in-process worker: %w", err))
		}
		wctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := w.Run(wctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("in-process worker stopped", "worker", local, "err", err)
			}
		}()
		undo = append(undo, func() { cancel(); <-done })
		log.Info("the daemon computes beside the remote workers", "worker", local, "slots", cfg.workers)
	}
	return ex, stop, nil
}

// localWorkerName is the daemon's in-process worker's name in `replayctl
// workers`: "replayd@HOST-PID", distinct from every `replayd worker`
// (named by --name) and from another daemon's.
func localWorkerName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return fmt.Sprintf("replayd@%s-%d", host, os.Getpid())
}

// workerList is the API's view of the executor's workers (nil without
// remote workers).
func workerList(ex *remote.Executor) func() api.WorkerList {
	if ex == nil {
		return nil
	}
	return func() api.WorkerList {
		l := api.WorkerList{Remote: true, Workers: []api.WorkerStatus{}}
		for _, w := range ex.Workers() {
			st := api.WorkerStatus{Name: w.Name, Fingerprint: w.Fingerprint, Slots: w.Slots, Busy: w.Busy,
				Done: w.Done, OpsPerSec: w.OpsPerSec, LastSeen: w.LastSeen, State: "ok", Refuses: w.RefusedRuns}
			switch {
			case w.Quarantined:
				st.State = "quarantined"
			case !w.Matches:
				st.State = "other-fingerprint"
			case time.Since(w.LastSeen) > remote.WorkerTimeout:
				st.State = "silent"
			}
			l.Workers = append(l.Workers, st)
		}
		slices.SortFunc(l.Workers, func(a, b api.WorkerStatus) int { return strings.Compare(a.Name, b.Name) })
		for run, why := range ex.Waits() {
			l.Stuck = append(l.Stuck, api.StuckRun{Run: run, Reason: why})
		}
		slices.SortFunc(l.Stuck, func(a, b api.StuckRun) int { return strings.Compare(a.Run, b.Run) })
		return l
	}
}
