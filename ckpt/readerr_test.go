package ckpt

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/y"
)

// errDisk stands for a failed read(2) of a table or value-log file.
var errDisk = &fs.PathError{Op: "read", Path: "000001.vlog", Err: errors.New("input/output error")}

// failingGetter is a transaction whose every read fails with errDisk.
type failingGetter struct{}

func (failingGetter) Get([]byte) (*badger.Item, error) { return nil, errDisk }

// fakeItem is a Badger item whose Value either fails with err before
// reading anything or hands val to the callback.
type fakeItem struct {
	val []byte
	err error
}

func (f fakeItem) Value(fn func([]byte) error) error {
	if f.err != nil {
		return f.err
	}
	return fn(f.val)
}

// A read that fails is an I/O error the caller may retry, never a
// corruption report that would have the run marked corrupt.
func TestReadConfigIOErrorIsNotCorruption(t *testing.T) {
	for name, read := range map[string]func() error{
		"config": func() error { _, err := readConfig(failingGetter{}, "r"); return err },
		"state":  func() error { _, err := readState(failingGetter{}, "r"); return err },
		"anchor": func() error {
			_, err := getRec(failingGetter{}, runKey("r", kindAnchor, 0), new(AnchorRec), "r", "anchor", 0)
			return err
		},
		"checkpoint": func() error {
			return readParams(failingGetter{}, "r", "checkpoint", runKey("r", kindCheckpoint, 5), 5, make([]float32, 4))
		},
	} {
		err := read()
		if err == nil || errors.Is(err, ErrCorrupt) || !errors.Is(err, errDisk) || !errors.Is(err, errIO) {
			t.Errorf("%s: a failed read gives %v; want the read error (errIO), not ErrCorrupt", name, err)
		}
		if err != nil && strings.Count(err.Error(), "input/output error") != 1 {
			t.Errorf("%s: message %q", name, err)
		}
	}
}

// The consistency checker stops at a failed read and returns it (Verify's
// error) instead of reporting the record as a problem; corruption is a
// problem and the check goes on.
func TestVerifierStopsAtAFailedRead(t *testing.T) {
	var rep VerifyReport
	v := verifier{name: "r", rep: &rep}
	if v.failed(corrupt("r", "batch", 3, errors.New("bad crc"))) || v.err != nil {
		t.Fatal("corruption taken for a failed read")
	}
	io := readValue(fakeItem{err: errDisk}, "r", "batch", 4, func([]byte) error { return nil })
	if !v.failed(io) || !errors.Is(v.err, errDisk) {
		t.Fatalf("failed read not kept: %v", v.err)
	}
	if !v.failed(corrupt("r", "batch", 5, errors.New("bad crc"))) || !errors.Is(v.err, errDisk) {
		t.Fatal("the check goes on after a failed read, or forgets it")
	}
}

func TestReadValueTellsIOFromCorruption(t *testing.T) {
	decode := func(b []byte) error {
		if len(b) != 4 {
			return fmt.Errorf("record of %d bytes, want 4", len(b))
		}
		return nil
	}
	cases := []struct {
		name    string
		item    fakeItem
		corrupt bool
	}{
		{"read fails", fakeItem{err: errDisk}, false},
		{"closed database", fakeItem{err: badger.ErrDBClosed}, false},
		{"checksum mismatch", fakeItem{err: fmt.Errorf("value corrupted: %w", y.ErrChecksumMismatch)}, true},
		{"does not decode", fakeItem{val: []byte{1, 2, 3}}, true},
		{"good", fakeItem{val: []byte{1, 2, 3, 4}}, false},
	}
	for _, c := range cases {
		err := readValue(c.item, "r", "checkpoint", 7, decode)
		var ce *CorruptionError
		isCorrupt := errors.As(err, &ce) && errors.Is(err, ErrCorrupt)
		if isCorrupt != c.corrupt {
			t.Errorf("%s: err %v; corruption %v, want %v", c.name, err, isCorrupt, c.corrupt)
		}
		if c.item.err != nil && !errors.Is(err, c.item.err) {
			t.Errorf("%s: err %v does not wrap %v", c.name, err, c.item.err)
		}
		if c.name == "good" && err != nil {
			t.Errorf("good record: %v", err)
		}
		if isCorrupt && (ce.Run != "r" || ce.Kind != "checkpoint" || ce.Step != 7) {
			t.Errorf("%s: corruption names %q %s %d", c.name, ce.Run, ce.Kind, ce.Step)
		}
	}
}

// A config record that is stored but does not decode is still corruption.
func TestGarbledConfigIsCorruption(t *testing.T) {
	s, err := Open(testOptions(t.TempDir())) // not openTest: the store is corrupt on purpose
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateRun(testConfig("r", 8), testTheta0(1, 8)); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(runKey("r", kindConfig), []byte{0xc1}) // 0xc1: never used by msgpack
	}); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Run("r")
	var ce *CorruptionError
	if !errors.As(err, &ce) || ce.Kind != "config" {
		t.Fatalf("garbled config: %v; want a CorruptionError of the config", err)
	}
}

// A closed store answers ErrClosed, not corruption.
func TestClosedStoreIsNotCorruption(t *testing.T) {
	s := openTest(t, t.TempDir())
	if err := s.CreateRun(testConfig("r", 8), testTheta0(1, 8)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Run("r"); !errors.Is(err, ErrClosed) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("Run on a closed store: %v; want ErrClosed", err)
	}
}
