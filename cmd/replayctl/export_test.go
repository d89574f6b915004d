package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/export"
)

func TestExportParams(t *testing.T) {
	f := newFake(t, sampleRun("fm"))
	dir := t.TempDir()
	p := filepath.Join(dir, "b900.safetensors")
	out, _, err := f.cli("export", "--step", "900", "--kind", "backward", "--out", p)
	if err != nil {
		t.Fatal(err)
	}
	if f.lastRequest() != "GET /v1/runs/fm/params?kind=backward&step=900" {
		t.Errorf("request %s", f.lastRequest())
	}
	if !strings.Contains(out, "wrote "+p+": backward parameters of run fm at step 900, 2 tensors") {
		t.Errorf("output %q", out)
	}
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	ts, err := export.ReadSafetensors(fh)
	if err != nil || len(ts) != 2 || ts[1].Name != "0.weight" || ts[1].Data[0] != 900 {
		t.Errorf("file: %v %+v", err, ts)
	}
	// JSON summary and stdout output.
	out, _, err = f.cli("export", "--step", "0", "--kind", "forward", "--out", p, "-o", "json")
	var res struct {
		File    string `json:"file"`
		Step    *int   `json:"step"`
		Tensors []struct {
			Name  string `json:"name"`
			Shape []int  `json:"shape"`
		} `json:"tensors"`
	}
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || res.File != p || *res.Step != 0 || res.Tensors[1].Shape[1] != 3 {
		t.Errorf("json: %v %s", err, out)
	}
	out, stderr, err := f.cli("export", "--step", "3", "--kind", "forward", "--out", "-")
	if err != nil {
		t.Fatal(err)
	}
	if ts, err := export.ReadSafetensors(strings.NewReader(out)); err != nil || len(ts) != 2 {
		t.Errorf("stdout export: %v", err)
	}
	if !strings.Contains(stderr, "wrote -") {
		t.Errorf("stderr %q", stderr)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
}

func TestExportBatches(t *testing.T) {
	f := newFake(t, sampleRun("fm"))
	p := filepath.Join(t.TempDir(), "b.npy")
	out, _, err := f.cli("export", "--batches", "--out", p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "int64 [1200, 8]") {
		t.Errorf("output %q", out)
	}
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, c, data, err := export.ReadNpyInt64(fh)
	if err != nil || r != 1200 || c != 8 || data[9] != 9 {
		t.Errorf("npy: %v %d %d", err, r, c)
	}
	out, _, err = f.cli("export", "--batches", "--out", p, "-o", "csv")
	if err != nil || !strings.HasPrefix(out, "run,file,bytes,kind,step\nfm,") {
		t.Errorf("csv: %v %q", err, out)
	}
}

func TestExportErrors(t *testing.T) {
	f := newFake(t, sampleRun("fm"))
	dir := t.TempDir()
	p := filepath.Join(dir, "x.safetensors")
	usage := [][]string{
		{"--step", "1", "--kind", "forward"},                  // no --out
		{"--kind", "forward", "--out", p},                     // no --step
		{"--step", "1", "--out", p},                           // no --kind
		{"--step", "1", "--kind", "sideways", "--out", p},     // bad kind
		{"--step", "-1", "--kind", "forward", "--out", p},     // negative step
		{"--batches", "--step", "1", "--out", p},              // both
		{"--step", "1", "--kind", "forward", "--out", p, "x"}, // extra argument
	}
	for _, args := range usage {
		_, _, err := f.cli(append([]string{"export"}, args...)...)
		if !errors.Is(err, errUsage) {
			t.Errorf("%q: %v", args, err)
		}
		oneLine(t, err)
	}
	n := len(f.requests)
	// A file that cannot be written fails before asking the daemon.
	for _, bad := range []string{filepath.Join(dir, "missing", "x.safetensors"), dir} {
		_, _, err := f.cli("export", "--step", "1", "--kind", "forward", "--out", bad)
		oneLine(t, err)
		if !strings.HasPrefix(err.Error(), "export: cannot write "+bad) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	if len(f.requests) != n {
		t.Errorf("unwritable output still asked the daemon")
	}
	// Out of range and unknown run: the daemon's line, no file left.
	_, _, err := f.cli("export", "--step", "5000", "--kind", "backward", "--out", p)
	oneLine(t, err)
	if err.Error() != "step 5000 out of range: the backward trajectory of run fm reaches step 900" {
		t.Errorf("range: %v", err)
	}
	_, _, err = f.cli("export", "--run", "nope", "--batches", "--out", p)
	if !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown run: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed exports left files: %v", ents)
	}
}
