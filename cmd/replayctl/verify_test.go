package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
)

func TestVerify(t *testing.T) {
	f := newFake(t, sampleRun("fm"))
	f.b.Locked(func() { f.b.Report = api.VerifyReport{Checkpoints: 4, Steps: 1200, OK: true} })
	out, _, err := f.cli("verify")
	if err != nil || out != "run fm: 4 checkpoints, 1200 steps re-executed: ok\n" {
		t.Errorf("%v %q", err, out)
	}
	if f.lastRequest() != "POST /v1/runs/fm/verify?" {
		t.Errorf("request %s", f.lastRequest())
	}
	f.b.Locked(func() {
		f.b.Report = api.VerifyReport{Checkpoints: 4, Steps: 1200, OK: false,
			Problems: []string{"checkpoint 400: replay from 0 differs at element 17", "batch log step 812: checksum mismatch"}}
	})
	out, _, err = f.cli("verify", "--run", "fm")
	oneLine(t, err)
	if !errors.Is(err, errVerify) || !strings.Contains(err.Error(), "2 problem(s), first: checkpoint 400") {
		t.Errorf("err %v", err)
	}
	if !strings.Contains(out, "  checkpoint 400: replay from 0 differs at element 17\n  batch log step 812: checksum mismatch\n") {
		t.Errorf("report %q", out)
	}
	out, _, err = f.cli("verify", "-o", "json")
	var rep api.VerifyReport
	if err == nil || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Problems) != 2 || rep.Run != "fm" {
		t.Errorf("json: %v %s", err, out)
	}
	out, _, _ = f.cli("verify", "-o", "csv")
	if !strings.HasPrefix(out, "run,checkpoints,steps,ok,problems\nfm,4,1200,false,") {
		t.Errorf("csv %q", out)
	}
	_, _, err = f.cli("verify", "--run", "nope")
	if !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
}
