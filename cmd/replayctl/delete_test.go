package main

import (
	"errors"
	"testing"

	"github.com/replay-sgd/replay/api"
)

func TestDelete(t *testing.T) {
	f := newFake(t, sampleRun("fm"))
	// Never guessed, even with a single run.
	_, _, err := f.cli("delete")
	if !errors.Is(err, errUsage) || f.mutated() != 0 {
		t.Errorf("delete without RUN: %v", err)
	}
	_, _, err = f.cli("delete", "nope")
	oneLine(t, err)
	if !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	out, _, err := f.cli("delete", "fm")
	if err != nil || out != "deleted run fm\n" || f.lastRequest() != "DELETE /v1/runs/fm?" {
		t.Errorf("%v %q %s", err, out, f.lastRequest())
	}
	if out, _, _ := f.cli("runs", "-o", "csv"); out != "name,state,preset,model,dataset,lr,batch,steps,forward_step,backward_step\n" {
		t.Errorf("run still listed: %q", out)
	}
	f = newFake(t, sampleRun("a,b"))
	out, _, err = f.cli("delete", "a,b", "-o", "csv")
	if err != nil || out != "deleted\n\"a,b\"\n" {
		t.Errorf("csv: %v %q", err, out)
	}
	out, _, err = newFake(t, sampleRun("x")).cli("delete", "x", "-o", "json")
	if err != nil || out != "{\n  \"deleted\": \"x\"\n}\n" {
		t.Errorf("json: %v %q", err, out)
	}
}
