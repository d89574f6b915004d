package remote

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descQueued      = prometheus.NewDesc("replay_remote_jobs_queued_total", "Backward jobs published to the work queue.", nil, nil)
	descInFlight    = prometheus.NewDesc("replay_remote_jobs_in_flight", "Jobs published whose result has not come back.", nil, nil)
	descResults     = prometheus.NewDesc("replay_remote_results_total", "Results received from workers (duplicates included).", nil, nil)
	descDuplicates  = prometheus.NewDesc("replay_remote_duplicates_total", "Results dropped because their job's result had been accepted already.", nil, nil)
	descRedelivered = prometheus.NewDesc("replay_remote_redelivered_total", "Results of jobs delivered more than once (a worker died or timed out).", nil, nil)
	descDead        = prometheus.NewDesc("replay_remote_dead_total", "Jobs that exhausted their deliveries (their run failed).", nil, nil)
	descVerified    = prometheus.NewDesc("replay_remote_verified_total", "Remote results re-executed locally and found bitwise equal.", nil, nil)
	descMismatches  = prometheus.NewDesc("replay_remote_mismatches_total", "Remote results re-executed locally and found different.", nil, nil)
	descConnected   = prometheus.NewDesc("replay_remote_connected", "1 while the daemon is connected to the NATS server, else 0.", nil, nil)
	descQuarantined = prometheus.NewDesc("replay_remote_workers_quarantined", "Workers quarantined by a failed spot check.", nil, nil)
	descWorkers     = prometheus.NewDesc("replay_remote_workers", "Workers heard from in the last heartbeat timeout.", []string{"fingerprint_matches"}, nil)
	descWorkerDone  = prometheus.NewDesc("replay_remote_worker_jobs_done", "Jobs a worker reports done.", []string{"worker"}, nil)
	descWorkerOps   = prometheus.NewDesc("replay_remote_worker_ops", "Operator applications a worker reports done.", []string{"worker"}, nil)
	descRechecked   = prometheus.NewDesc("replay_remote_rechecked_total", "Earlier unchecked results of quarantined workers re-executed and found equal.", nil, nil)
	descTainted     = prometheus.NewDesc("replay_remote_tainted_total", "Earlier unchecked results of quarantined workers re-executed and found different (their run fails).", nil, nil)
	descStuck       = prometheus.NewDesc("replay_remote_runs_refused", "Runs with jobs queued that every live worker refuses (their data set differs on each).", nil, nil)
	descWaiting     = prometheus.NewDesc("replay_remote_runs_waiting", "Runs with jobs out that no live worker can take, by why: no-worker (none connected), fingerprint (none of the run's), refused (every one refuses the run's data set).", []string{"reason"}, nil)
)

var _ prometheus.Collector = (*Executor)(nil)

// Describe implements prometheus.Collector.
func (e *Executor) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueued, descInFlight, descResults, descDuplicates, descRedelivered,
		descDead, descVerified, descMismatches, descConnected, descQuarantined, descWorkers, descWorkerDone, descWorkerOps, descStuck, descWaiting, descRechecked, descTainted} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (e *Executor) Collect(ch chan<- prometheus.Metric) {
	st := e.Stats()
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(descQueued, st.Queued)
	counter(descResults, st.Results)
	counter(descDuplicates, st.Duplicates)
	counter(descRedelivered, st.Redelivered)
	counter(descDead, st.Dead)
	counter(descVerified, st.Verified)
	counter(descMismatches, st.Mismatches)
	counter(descRechecked, st.Rechecked)
	counter(descTainted, st.Tainted)
	waiting := map[int]int{}
	for _, b := range e.waits() { // before e.mu: waits takes it
		waiting[b.kind]++
	}
	for kind, label := range map[int]string{blockedNoWorker: "no-worker", blockedFingerprint: "fingerprint", blockedRefused: "refused"} {
		ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(waiting[kind]), label)
	}
	e.mu.Lock()
	inflight, quar := len(e.mu.seqs), len(e.mu.quar)
	stuck := 0
	for _, s := range e.mu.stuck {
		if s {
			stuck++
		}
	}
	var match, other int
	type w struct {
		name      string
		done, ops int64
	}
	var ws []w
	for _, wi := range e.mu.workers {
		if time.Since(wi.LastSeen) >= workerTimeout {
			continue
		}
		if wi.Matches {
			match++
		} else {
			other++
		}
		ws = append(ws, w{wi.Name, wi.Done, wi.Ops})
	}
	e.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(inflight))
	ch <- prometheus.MustNewConstMetric(descQuarantined, prometheus.GaugeValue, float64(quar))
	ch <- prometheus.MustNewConstMetric(descStuck, prometheus.GaugeValue, float64(stuck))
	connected := 0.0
	if e.nc.IsConnected() {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, connected)
	ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(match), "true")
	ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(other), "false")
	for _, x := range ws {
		ch <- prometheus.MustNewConstMetric(descWorkerDone, prometheus.GaugeValue, float64(x.done), x.name)
		ch <- prometheus.MustNewConstMetric(descWorkerOps, prometheus.GaugeValue, float64(x.ops), x.name)
	}
}
