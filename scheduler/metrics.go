package scheduler

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// collectors are the scheduler's Prometheus metrics. They exist (and are
// updated) whether or not Register was called.
type collectors struct {
	steps   *prometheus.CounterVec // committed steps by kind
	ops     prometheus.Counter
	jobSecs prometheus.Histogram
	queue   prometheus.Gauge
	store   prometheus.Collector
	runs    prometheus.Collector
	// busy is the total wall time of backward jobs, in nanoseconds (for
	// the overhead benchmark: everything else a worker does is scheduling
	// and storage).
	busy atomic.Int64
}

func newCollectors(s *Scheduler) *collectors {
	return &collectors{
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "replay_steps_total",
			Help: "Steps committed to the store, by kind (forward, backward).",
		}, []string{"kind"}),
		ops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "replay_operator_applications_total",
			Help: "SGD operator applications (or their memoized equivalent), forward and backward.",
		}),
		jobSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "replay_job_seconds",
			Help:    "Wall time of backward jobs.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "replay_queue_depth",
			Help: "Backward jobs dispatched and not yet returned, over all runs.",
		}),
		store: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "replay_store_bytes",
			Help: "Size of the Badger store (LSM tree plus value log).",
		}, func() float64 {
			lsm, vlog := s.store.Size()
			return float64(lsm + vlog)
		}),
		runs: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "replay_runs",
			Help: "Runs known to the scheduler.",
		}, func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			return float64(len(s.mu.runs))
		}),
	}
}

// Register adds the scheduler's collectors to reg: replay_steps_total{kind},
// replay_operator_applications_total, replay_job_seconds,
// replay_queue_depth, replay_store_bytes, replay_runs.
func (s *Scheduler) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{s.met.steps, s.met.ops, s.met.jobSecs, s.met.queue, s.met.store, s.met.runs} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("scheduler: register metrics: %w", err)
		}
	}
	return nil
}
