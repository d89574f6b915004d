package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/replay-sgd/replay/api"
)

// Defaults of the event broker.
const (
	// eventsKept is how many events of a run the broker keeps for clients
	// that resume with a cursor.
	eventsKept = 256
	// subscriberQueue bounds the events waiting for one subscriber; a
	// subscriber that falls further behind gets a resync snapshot instead.
	// It is at least eventsKept, so a resumption always fits.
	subscriberQueue = eventsKept
	// progressEvery is the least time between two progress events of a run.
	progressEvery = 200 * time.Millisecond
)

// statusFunc returns the status of a run, or false when it does not exist.
type statusFunc func(name string) (api.RunStatus, bool)

// broker is the in-memory event stream of the scheduler: the events of
// Scheduler.event (the lines of Options.Events, parsed), progress and state
// publications, fanned out to subscribers.
//
// Invariants: events get strictly increasing sequence numbers; the events
// of one run reach each subscriber in publication order, or are replaced by
// a snapshot event (resync) when the subscriber fell behind; publishing
// never blocks on a subscriber and never calls into the scheduler (its lock
// is a leaf: event is called under run.mu and Scheduler.mu). Snapshots are
// taken without the broker's lock held, after the subscriber is registered,
// so an event is either reflected in the snapshot or delivered after it.
type broker struct {
	boot     string // identifies this broker (this daemon process) in event ids
	kept     int
	queue    int
	interval time.Duration
	status   statusFunc

	mu struct {
		sync.Mutex
		seq  uint64
		runs map[string]*runEvents
		all  map[*Subscription]struct{} // daemon-wide subscribers (run "")
	}
}

// runEvents is the broker's state of one run name.
type runEvents struct {
	ring    []api.Event // the last kept events, oldest first
	evicted uint64      // seq of the newest event dropped from ring (0: none)
	subs    map[*Subscription]struct{}
	// progress rate limit: last is when the last progress event was
	// published; armed is set while one is scheduled.
	last  time.Time
	armed bool
}

func newBroker(status statusFunc, kept, queue int, interval time.Duration) *broker {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand.Read's contract)
	br := &broker{boot: hex.EncodeToString(b[:]), kept: kept, queue: max(queue, kept), interval: interval, status: status}
	br.mu.runs = map[string]*runEvents{}
	br.mu.all = map[*Subscription]struct{}{}
	return br
}

func (b *broker) id(seq uint64) string { return b.boot + "-" + strconv.FormatUint(seq, 10) }

// parseCursor returns the sequence number of an event id of this broker;
// false for an id of another broker (an earlier daemon) or a malformed one.
func (b *broker) parseCursor(id string) (uint64, bool) {
	boot, seq, ok := strings.Cut(id, "-")
	if !ok || boot != b.boot {
		return 0, false
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	return n, err == nil
}

// runLocked returns the state of a run name, creating it.
func (b *broker) runLocked(name string) *runEvents {
	re := b.mu.runs[name]
	if re == nil {
		re = &runEvents{subs: map[*Subscription]struct{}{}}
		b.mu.runs[name] = re
	}
	return re
}

// publish gives ev the next id and sends it to the run's subscribers. An
// event of kind "deleted" ends their streams and forgets the run.
func (b *broker) publish(ev api.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.publishLocked(b.runLocked(ev.Run), ev)
}

func (b *broker) publishLocked(re *runEvents, ev api.Event) {
	b.mu.seq++
	ev.ID = b.id(b.mu.seq)
	if ev.Kind == api.EventProgress {
		// A progress event supersedes the previous one: only the latest
		// is kept for resumption, so the kept events of a run are mostly
		// the small event log ones and memory stays ~ kept × 300 B a run.
		for i, old := range re.ring {
			if old.Kind == api.EventProgress {
				re.ring = append(re.ring[:i], re.ring[i+1:]...)
				break
			}
		}
	}
	if len(re.ring) == b.kept {
		re.evicted = seqOf(re.ring[0].ID)
		copy(re.ring, re.ring[1:])
		re.ring = re.ring[:b.kept-1]
	}
	re.ring = append(re.ring, ev)
	end := ev.Kind == api.EventDeleted
	for sub := range re.subs {
		sub.push(ev, b.queue, end)
	}
	for sub := range b.mu.all {
		sub.push(ev, b.queue, false)
	}
	if end {
		delete(b.mu.runs, ev.Run)
	}
}

// seqOf is the sequence number of one of the broker's own ids.
func seqOf(id string) uint64 {
	_, s, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// progress publishes a progress event of run name with the status fn
// returns, at most once per interval: a publication within the interval
// is deferred to its end and coalesced with the ones after it, so the last
// progress is never lost. fn is called later, on another goroutine, with
// no lock held: the trainer and the backward loop never compute a status.
func (b *broker) progress(name string, fn func() api.RunStatus) {
	b.mu.Lock()
	defer b.mu.Unlock()
	re := b.runLocked(name)
	if re.armed {
		return
	}
	re.armed = true
	delay := b.interval - time.Since(re.last)
	time.AfterFunc(max(delay, 0), func() {
		st := fn()
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.mu.runs[name] != re {
			return // deleted meanwhile
		}
		re.armed, re.last = false, time.Now()
		b.publishLocked(re, api.Event{Run: name, Kind: api.EventProgress, Status: &st})
	})
}

// lastWaiting is the waiting reason of the run's latest kept event with a
// status ("" when none is kept).
func (b *broker) lastWaiting(name string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	re := b.mu.runs[name]
	if re == nil {
		return ""
	}
	for i := len(re.ring) - 1; i >= 0; i-- {
		if st := re.ring[i].Status; st != nil {
			return st.Waiting
		}
	}
	return ""
}

// endAll ends every subscriber's stream (the scheduler stopped); kept
// events stay, so clients resume where they were.
func (b *broker) endAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, re := range b.mu.runs {
		for sub := range re.subs {
			sub.end()
		}
		clear(re.subs)
	}
	for sub := range b.mu.all {
		sub.end()
	}
	clear(b.mu.all)
}

// subscribe registers a subscriber to the events of run name after cursor.
// With an empty cursor, one of an earlier broker, or one older than the
// kept events, the first event is a snapshot of the run's status;
// otherwise the kept events after the cursor come first. ErrNotFound if
// the run does not exist.
func (b *broker) subscribe(name, cursor string) (*Subscription, error) {
	// Checked before registering, so that asking for runs that do not
	// exist leaves nothing behind, and after, in case the run was deleted
	// in between (its "deleted" event would never come).
	if _, exists := b.status(name); !exists {
		return nil, fmt.Errorf("run %q: %w", name, ErrNotFound)
	}
	sub := &Subscription{b: b, run: name, notify: make(chan struct{}, 1)}
	b.mu.Lock()
	re := b.runLocked(name)
	seq, ok := b.parseCursor(cursor)
	why := "connect"
	switch {
	case cursor == "":
	case !ok || seq > b.mu.seq:
		why, ok = "cursor", false // another daemon's (or a forged) cursor
	case seq < re.evicted:
		why, ok = "cursor", false // events after it were dropped
	}
	if ok {
		for _, ev := range re.ring {
			if seqOf(ev.ID) > seq {
				sub.mu.queue = append(sub.mu.queue, ev)
			}
		}
	} else {
		sub.mu.snapshot, sub.mu.snapSeq, sub.mu.why = true, b.mu.seq, why
	}
	re.subs[sub] = struct{}{}
	b.mu.Unlock()
	if _, exists := b.status(name); !exists {
		sub.Close()
		return nil, fmt.Errorf("run %q: %w", name, ErrNotFound)
	}
	return sub, nil
}

// Subscription is one client's view of a run's events. Next is called from
// one goroutine; Close from any, once or more.
type Subscription struct {
	b      *broker
	run    string
	notify chan struct{} // capacity 1: something is queued or the stream ended

	mu struct {
		sync.Mutex
		queue    []api.Event
		snapshot bool   // a snapshot event is due before the queue
		snapSeq  uint64 // its sequence number
		why      string // connect | cursor | overflow
		ended    bool
	}
}

// push queues ev (called under the broker's lock). On overflow the queue is
// dropped and a resync snapshot replaces it.
func (s *Subscription) push(ev api.Event, limit int, end bool) {
	s.mu.Lock()
	if len(s.mu.queue) >= limit {
		s.mu.queue = s.mu.queue[:0]
		s.mu.snapshot, s.mu.why = true, "overflow"
	}
	if s.mu.snapshot && s.mu.why == "overflow" && !end {
		// Events after an overflow are reflected in the snapshot, which
		// is taken when the subscriber next asks.
		s.mu.snapSeq = seqOf(ev.ID)
	} else {
		s.mu.queue = append(s.mu.queue, ev)
	}
	if end {
		s.mu.ended = true
	}
	s.mu.Unlock()
	kick(s.notify)
}

func (s *Subscription) end() {
	s.mu.Lock()
	s.mu.ended = true
	s.mu.Unlock()
	kick(s.notify)
}

// Next returns the next events in order, waiting until there are some.
// It returns false when the stream has ended (the run was deleted: its
// "deleted" event was the last one returned; or the scheduler stopped) or
// ctx is done.
func (s *Subscription) Next(ctx context.Context) ([]api.Event, bool) {
	for {
		s.mu.Lock()
		evs := s.mu.queue
		s.mu.queue = nil
		snap, seq, why, ended := s.mu.snapshot, s.mu.snapSeq, s.mu.why, s.mu.ended
		s.mu.snapshot = false
		s.mu.Unlock()
		if snap && s.run == "" {
			// Daemon-wide: no status to take; the marker tells the
			// reader that events were dropped (it lists the runs again).
			evs = append([]api.Event{{ID: s.b.id(seq), Kind: api.EventSnapshot, Fields: map[string]string{"why": why}}}, evs...)
		} else if snap {
			// Taken now, after every event up to seq was published.
			if st, ok := s.b.status(s.run); ok {
				ev := api.Event{ID: s.b.id(seq), Run: s.run, Kind: api.EventSnapshot, Status: &st,
					Fields: map[string]string{"why": why}}
				evs = append([]api.Event{ev}, evs...)
			}
		}
		if len(evs) > 0 {
			return evs, true
		}
		if ended {
			return nil, false
		}
		select {
		case <-s.notify:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// Close unregisters the subscriber.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	delete(s.b.mu.all, s)
	if re := s.b.mu.runs[s.run]; re != nil && s.run != "" {
		delete(re.subs, s)
		if len(re.subs) == 0 && len(re.ring) == 0 && !re.armed {
			delete(s.b.mu.runs, s.run)
		}
	}
}

// errEventLine marks an event log line that does not parse; it never
// happens for the lines the scheduler writes.
var errEventLine = errors.New("scheduler: malformed event line")

// parseEventLine splits "KIND k=v k=v…" (values plain or Go-quoted) into
// the kind and the fields.
func parseEventLine(line string) (string, map[string]string, error) {
	kind, rest, _ := strings.Cut(line, " ")
	fields := map[string]string{}
	for rest = strings.TrimLeft(rest, " "); rest != ""; rest = strings.TrimLeft(rest, " ") {
		k, v, ok := strings.Cut(rest, "=")
		if !ok || k == "" || strings.Contains(k, " ") {
			return kind, fields, fmt.Errorf("%w: %q", errEventLine, line)
		}
		if strings.HasPrefix(v, `"`) {
			q, err := strconv.QuotedPrefix(v)
			if err != nil {
				return kind, fields, fmt.Errorf("%w: %q: %w", errEventLine, line, err)
			}
			fields[k], _ = strconv.Unquote(q)
			rest = v[len(q):]
			continue
		}
		val, after, _ := strings.Cut(v, " ")
		fields[k] = val
		rest = after
	}
	return kind, fields, nil
}

// eventBroker returns the scheduler's event stream.
func (s *Scheduler) eventBroker() *broker {
	s.busOnce.Do(func() {
		s.bus = newBroker(func(name string) (api.RunStatus, bool) {
			st, err := s.Status(name)
			return st, err == nil
		}, eventsKept, subscriberQueue, progressEvery)
	})
	return s.bus
}

// Subscribe follows the events of run name after cursor (an api.Event ID,
// or "" for none): next returns the next events in order, blocking until
// there are some, and false once the stream has ended (the run was
// deleted, the scheduler stopped) or ctx is done; stop unregisters. The
// first event is a snapshot unless cursor is one of this scheduler's ids
// whose successors are still kept (see api.Event). A subscriber that falls
// more than a few hundred events behind gets a snapshot in their place: a
// slow client never holds the scheduler back. ErrNotFound for an unknown
// run.
func (s *Scheduler) Subscribe(name, cursor string) (next func(context.Context) ([]api.Event, bool), stop func(), err error) {
	sub, err := s.eventBroker().subscribe(name, cursor)
	if err != nil {
		return nil, nil, err
	}
	return sub.Next, sub.Close, nil
}

// SubscribeAll follows the events of every run (web2: the daemon-wide
// stream GET /v1/events), from now on, without a snapshot: the caller
// lists the runs after subscribing. A subscriber that falls behind gets,
// in place of the events it missed, one snapshot event with no run and no
// status (list the runs again).
func (s *Scheduler) SubscribeAll() (next func(context.Context) ([]api.Event, bool), stop func()) {
	sub := s.eventBroker().subscribeAll()
	return sub.Next, sub.Close
}

func (b *broker) subscribeAll() *Subscription {
	sub := &Subscription{b: b, notify: make(chan struct{}, 1)}
	b.mu.Lock()
	b.mu.all[sub] = struct{}{}
	b.mu.Unlock()
	return sub
}

// publishProgress announces that the run's forward step or backward
// frontier moved (rate-limited; the status is computed later, off the
// caller's goroutine). Called without run.mu held.
func (r *run) publishProgress() { r.s.eventBroker().progress(r.name, r.status) }

// stateEvent writes an event log line (see Scheduler.event) and publishes
// it as a state event with the run's status and the line's fields: a
// change of the state the status shows (paused for a full disk, resumed)
// that clients follow from the status. Called without run.mu held.
func (s *Scheduler) stateEvent(r *run, line string) {
	_, fields, err := parseEventLine(line)
	if err != nil {
		s.log.Error("scheduler: event", "run", r.name, "err", err)
	}
	s.writeEventLine(r.name, line)
	st := r.status()
	s.eventBroker().publish(api.Event{Run: r.name, Kind: api.EventState, Fields: fields, Status: &st})
}

// publishState announces a state change that has no event log line
// (pause, resume). Called without run.mu held.
func (s *Scheduler) publishState(r *run) {
	st := r.status()
	s.eventBroker().publish(api.Event{Run: r.name, Kind: api.EventState, Status: &st})
}
