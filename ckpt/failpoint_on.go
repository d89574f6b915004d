//go:build failpoints

package ckpt

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// FailpointsEnabled reports whether this binary was built with
// -tags failpoints.
const FailpointsEnabled = true

// Fault injection for crash and I/O-error tests, in the manner of bbolt's
// and pebble's build-tagged failpoints. REPLAY_FAILPOINTS lists
// site=action[@n] entries separated by commas; the action fires at the n-th
// hit of the site (default: the first) and at that hit only — or, while
// the file REPLAY_FAILPOINT_HOLD names exists, at every later hit too (a
// disk that stays full or broken until the test says otherwise). Actions:
//
//	kill    SIGKILL the process at once (a crash between two writes)
//	enospc  the write fails with ENOSPC
//	eio     the write fails with EIO
//	drop    the write of a checkpoint is silently left out (a store that
//	        lost one, as stores written before the commit order was fixed)
//	panic   a new goroutine panics (as Badger's compactions do on a table
//	        damaged while the store is open): the process ends
//
// Sites (see where failpoint is called):
//
//	checkpoint  before a forward checkpoint is written, by AppendForward
//	            with a checkpoint or by PutCheckpoint
//	append      before AppendForward's transaction
//	backward    before PutBackward writes anything
//	metrics     in PutBackward, after the kept parameters are stored and
//	            before the metrics and the state
//	anchor      before PutAnchor's transaction
//	state       before PutState's transaction
//	create      before CreateRun's transaction
//	delete      before DeleteRun's first transaction
//	space       in every write's space check, before statfs
//	sync        before the store syncs
var failpoints = parseFailpoints(os.Getenv("REPLAY_FAILPOINTS"))

// failpointHold is the file whose existence makes a fault that fired fire
// again at every hit.
var failpointHold = os.Getenv("REPLAY_FAILPOINT_HOLD")

type fpAction struct {
	action string
	at     int
}

var fpHits struct {
	sync.Mutex
	n map[string]int
}

func parseFailpoints(s string) map[string]fpAction {
	out := map[string]fpAction{}
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		site, act, ok := strings.Cut(e, "=")
		if !ok {
			panic("ckpt: REPLAY_FAILPOINTS entry without '=': " + e)
		}
		a := fpAction{action: act, at: 1}
		if act, n, ok := strings.Cut(act, "@"); ok {
			k, err := strconv.Atoi(n)
			if err != nil || k < 1 {
				panic("ckpt: REPLAY_FAILPOINTS: bad hit count in " + e)
			}
			a = fpAction{action: act, at: k}
		}
		switch a.action {
		case "kill", "enospc", "eio", "drop", "panic":
		default:
			panic("ckpt: REPLAY_FAILPOINTS: unknown action in " + e)
		}
		out[site] = a
	}
	return out
}

func holding() bool {
	if failpointHold == "" {
		return false
	}
	_, err := os.Stat(failpointHold)
	return err == nil
}

func failpoint(site string) error {
	a, ok := failpoints[site]
	if !ok {
		return nil
	}
	fpHits.Lock()
	if fpHits.n == nil {
		fpHits.n = map[string]int{}
	}
	fpHits.n[site]++
	hit := fpHits.n[site]
	fpHits.Unlock()
	if hit < a.at || hit > a.at && !holding() {
		return nil
	}
	fmt.Fprintf(os.Stderr, "ckpt: failpoint %s=%s at hit %d\n", site, a.action, hit)
	switch a.action {
	case "kill":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	case "enospc":
		return fmt.Errorf("ckpt: failpoint %s: %w", site, syscall.ENOSPC)
	case "eio":
		return fmt.Errorf("ckpt: failpoint %s: %w", site, syscall.EIO)
	case "drop":
		return errDrop
	case "panic":
		go panic("ckpt: failpoint " + site + ": a background goroutine panicked")
		select {} // the panic ends the process
	}
	return nil
}
