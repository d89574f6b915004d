package ckpt

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Issue 10, cases 3 and 4: a directory that does not look like the store
// ckpt last wrote is refused before Badger opens it, with one line naming
// the file, and the directory is byte-identical afterwards. Each case
// damages a copy of a real store; before the fix every one of them opened
// (Badger started empty, deleted tables, or cut the value log).

const damagedDim = 20_000 // 80 KB vectors: in the value log

// realStore writes three runs with checkpoints every 10 steps into dir
// and returns the open store.
func realStore(t *testing.T, dir string) *Store {
	t.Helper()
	return realStoreOpts(t, testOptions(dir))
}

func realStoreOpts(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"a", "b", "c"} {
		seed := uint64(i + 1)
		cfg := testConfig(name, damagedDim)
		cfg.Seed, cfg.Steps, cfg.CheckpointEvery = seed, 40, 10
		if err := s.CreateRun(cfg, testTheta0(seed, damagedDim)); err != nil {
			t.Fatal(err)
		}
		appendSteps(t, s, name, seed, 1, 40)
		for k := 10; k <= 40; k += 10 {
			if err := s.PutCheckpoint(name, k, forwardTo(seed, damagedDim, k)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return s
}

// closedStore is a store closed cleanly; crashedStore the image of one
// whose process died after its last sync (a copy taken while it is open:
// Badger writes through the page cache the copy reads).
func closedStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := realStore(t, dir).Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func crashedStore(t *testing.T) string {
	t.Helper()
	s := realStore(t, t.TempDir())
	img := t.TempDir()
	copyDir(t, s.opts.Dir, img)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return img
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	// A copy of an open store is a crash image; its background compaction
	// may delete a table between the listing and the read, which no crash
	// image could show (a crash sees one instant). Copy again until no file
	// vanished on the way.
	for attempt := 0; ; attempt++ {
		err := copyOnce(from, to)
		if err == nil {
			return
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt == 50 {
			t.Fatal(err)
		}
	}
}

func copyOnce(from, to string) error {
	old, err := os.ReadDir(to)
	if err != nil {
		return err
	}
	for _, e := range old {
		if err := os.Remove(filepath.Join(to, e.Name())); err != nil {
			return err
		}
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// dirDigest is every file's name, mode and content hash.
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		lines = append(lines, fmt.Sprintf("%s %v %d %x", d.Name(), fi.Mode(), len(b), sha256.Sum256(b)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func TestDamagedStoreRefused(t *testing.T) {
	for _, c := range []struct {
		name   string
		store  func(*testing.T) string
		damage func(t *testing.T, dir string) (file string)
	}{
		{"MANIFEST removed", closedStore, func(t *testing.T, dir string) string {
			must(t, os.Remove(filepath.Join(dir, "MANIFEST")))
			return "MANIFEST"
		}},
		{"MANIFEST cut to 14 bytes", closedStore, func(t *testing.T, dir string) string {
			must(t, os.Truncate(filepath.Join(dir, "MANIFEST"), 14))
			return "MANIFEST"
		}},
		{"table removed", closedStore, func(t *testing.T, dir string) string {
			f, err := listStore(dir)
			if err != nil || len(f.ssts) == 0 {
				t.Fatalf("no table in the store: %v", err)
			}
			name := fmt.Sprintf("%06d.sst", f.ssts[0])
			must(t, os.Remove(filepath.Join(dir, name)))
			return name
		}},
		{"memtables removed after a crash", crashedStore, func(t *testing.T, dir string) string {
			mems, _ := filepath.Glob(filepath.Join(dir, "*.mem"))
			if len(mems) == 0 {
				t.Fatal("the crashed store has no memtable log")
			}
			for _, m := range mems {
				must(t, os.Remove(m))
			}
			return "*.mem"
		}},
		{"memtable logs emptied after a crash", crashedStore, func(t *testing.T, dir string) string {
			mems, _ := filepath.Glob(filepath.Join(dir, "*.mem"))
			for _, m := range mems {
				b, err := os.ReadFile(m)
				must(t, err)
				must(t, os.WriteFile(m, append(b[:vlogHeaderSize:vlogHeaderSize], make([]byte, len(b)-vlogHeaderSize)...), 0o600))
			}
			return "*.mem"
		}},
		{"table cut in half", closedStore, func(t *testing.T, dir string) string {
			p := firstTable(t, dir)
			fi, err := os.Stat(p)
			must(t, err)
			must(t, os.Truncate(p, fi.Size()/2))
			return filepath.Base(p)
		}},
		{"8 bytes flipped in a table", closedStore, func(t *testing.T, dir string) string {
			p := firstTable(t, dir)
			b, err := os.ReadFile(p)
			must(t, err)
			for i := len(b) / 3; i < len(b)/3+8; i++ {
				b[i] ^= 0xff
			}
			must(t, os.WriteFile(p, b, 0o600))
			return filepath.Base(p)
		}},
		{"8 bytes flipped in the newest value log", closedStore, func(t *testing.T, dir string) string {
			p := newestVlog(t, dir) // full path
			name := filepath.Base(p)
			b, err := os.ReadFile(p)
			must(t, err)
			if len(b) < 1000 {
				t.Fatalf("%s has %d bytes", name, len(b))
			}
			for i := len(b) / 2; i < len(b)/2+8; i++ {
				b[i] ^= 0xff
			}
			must(t, os.WriteFile(p, b, 0o600))
			return name
		}},
		{"older value log removed", closedStore, func(t *testing.T, dir string) string {
			p := olderVlog(t, dir)
			must(t, os.Remove(p))
			return filepath.Base(p)
		}},
		{"older value log removed after a crash", crashedStore, func(t *testing.T, dir string) string {
			p := olderVlog(t, dir)
			must(t, os.Remove(p))
			return filepath.Base(p)
		}},
		{"older value log cut", closedStore, func(t *testing.T, dir string) string {
			p := olderVlog(t, dir)
			fi, err := os.Stat(p)
			must(t, err)
			must(t, os.Truncate(p, fi.Size()-4096))
			return filepath.Base(p)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := c.store(t)
			file := c.damage(t, dir)
			before := dirDigest(t, dir)
			s, err := Open(testOptions(dir))
			if err == nil {
				runs, _ := s.Runs()
				s.Close()
				t.Fatalf("a damaged store opened (runs %v)", runs)
			}
			var de *DamagedError
			if !errors.As(err, &de) || !errors.Is(err, ErrDamaged) || de.File != file || strings.Contains(err.Error(), "\n") {
				t.Fatalf("open: %v; want one line of a DamagedError naming %s", err, file)
			}
			t.Log(err)
			if after := dirDigest(t, dir); after != before {
				t.Fatalf("the refused open changed the directory:\nbefore\n%s\nafter\n%s", before, after)
			}
		})
	}
}

// The undamaged images open and verify: the check refuses what is wrong,
// not every store it has not seen closed.
func TestUndamagedStoreOpens(t *testing.T) {
	for name, store := range map[string]func(*testing.T) string{"closed": closedStore, "crashed": crashedStore} {
		t.Run(name, func(t *testing.T) {
			s := openTest(t, store(t))
			if runs, err := s.Runs(); err != nil || len(runs) != 3 {
				t.Fatalf("runs %v %v, want a b c", runs, err)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Case 4 salvaged: a flipped byte in a checkpoint of the newest value log.
// Open refuses; the salvage open keeps the file whole (Badger used to cut it
// at the damage, losing every later value), the checkpoint after the damage
// reads, RepairCheckpoints recomputes the damaged one bitwise, and every run
// verifies.
func TestSalvageDamagedNewestVlog(t *testing.T) {
	// One value-log file holds everything: values follow the damage.
	dir := t.TempDir()
	if err := realStoreOpts(t, testOptions(dir).WithValueLogFileSize(8<<20)).Close(); err != nil {
		t.Fatal(err)
	}
	file := flipStored(t, dir, forwardTo(3, damagedDim, 30), 1000) // run c, checkpoint 30
	if newest := newestVlog(t, dir); file != newest {
		t.Fatalf("checkpoint c@30 is in %s, not in the newest value log %s", file, newest)
	}
	opts := testOptions(dir).WithValueLogFileSize(8 << 20)
	if _, err := Open(opts); !errors.Is(err, ErrDamaged) {
		t.Fatalf("open: %v, want ErrDamaged", err)
	}
	s, err := Open(opts.WithSalvage(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { checkStore(t, s); s.Close() })
	dst := make([]float32, damagedDim)
	if err := s.Checkpoint("c", 40, dst); err != nil || !equalBits(dst, forwardTo(3, damagedDim, 40)) {
		t.Fatalf("checkpoint c@40, after the damage, lost by the salvage open: %v", err)
	}
	if err := s.Checkpoint("c", 30, dst); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged checkpoint c@30: %v, want ErrCorrupt", err)
	}
	done, err := s.RepairCheckpoints("c", testReplay)
	if err != nil || !slices.Equal(done, []int{30}) {
		t.Fatalf("repair: %v %v, want [30]", done, err)
	}
	if err := s.Checkpoint("c", 30, dst); err != nil || !equalBits(dst, forwardTo(3, damagedDim, 30)) {
		t.Fatalf("repaired checkpoint c@30: %v", err)
	}
}

func firstTable(t *testing.T, dir string) string {
	t.Helper()
	f, err := listStore(dir)
	if err != nil || len(f.ssts) == 0 {
		t.Fatalf("no table in %s: %v", dir, err)
	}
	return filepath.Join(dir, fmt.Sprintf("%06d.sst", f.ssts[0]))
}

// Case 5 at run time: a table damaged under an open store (the page cache
// Badger maps). Reads and Verify report corruption; a panic of Badger's on
// the damaged blocks does not escape.
func TestTableDamagedWhileOpen(t *testing.T) {
	dir := closedStore(t)
	s, err := Open(testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := firstTable(t, dir)
	b, err := os.ReadFile(p)
	must(t, err)
	for i := range b[:len(b)*3/4] {
		b[i] = 0xa5
	}
	must(t, os.WriteFile(p, b, 0o600))
	for _, name := range []string{"a", "b", "c"} {
		rep, err := s.Verify(name, testReplay)
		if err == nil && rep.OK() {
			t.Errorf("verify of run %s on a damaged table: ok", name)
		}
		t.Logf("run %s: %v %q", name, err, rep.Problems)
	}
	dst := make([]float32, damagedDim)
	if err := s.Checkpoint("a", 10, dst); err == nil {
		t.Error("checkpoint a@10 read from a damaged table without error")
	} else {
		t.Log(err)
	}
}

// Repair of a lost MANIFEST: with it removed, cut, or replaced by an empty
// one, Open refuses (TestDamagedStoreRefused) and Salvage — replayd repair,
// after its backup — rebuilds it from the tables: every run is back and
// verifies, every checkpoint bitwise as written. Before, Salvage let Badger
// start an empty store and delete the tables: every run gone.
func TestSalvageLostManifest(t *testing.T) {
	for _, c := range []struct {
		name   string
		store  func(*testing.T) string
		damage func(t *testing.T, dir string)
	}{
		{"removed", tabledStore(false), func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, "MANIFEST"))) }},
		{"cut to 14 bytes", tabledStore(false), func(t *testing.T, dir string) { must(t, os.Truncate(filepath.Join(dir, "MANIFEST"), 14)) }},
		{"removed after a crash", tabledStore(true), func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, "MANIFEST"))) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := c.store(t)
			ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
			if len(ssts) < 2 {
				t.Fatalf("the store has %d tables: too few to test the rebuild", len(ssts))
			}
			c.damage(t, dir)
			if _, err := Open(testOptions(dir)); !errors.Is(err, ErrDamaged) {
				t.Fatalf("open without the MANIFEST: %v, want ErrDamaged", err)
			}
			s, err := Open(testOptions(dir).WithSalvage(true))
			if err != nil {
				t.Fatalf("salvage: %v", err)
			}
			runs, err := s.Runs()
			if err != nil || !slices.Equal(runs, []string{"a", "b", "c", "d"}) {
				t.Fatalf("runs after the salvage: %v %v", runs, err)
			}
			got := make([]float32, damagedDim)
			for i, name := range runs[:3] {
				seed := uint64(i + 1)
				for k := 10; k <= 40; k += 10 {
					must(t, s.Checkpoint(name, k, got))
					if want := forwardTo(seed, damagedDim, k); !slices.Equal(got, want) {
						t.Fatalf("run %s checkpoint %d differs after the salvage", name, k)
					}
				}
			}
			checkStore(t, s)
			must(t, s.Close())
			// And the store opens normally from then on.
			s, err = Open(testOptions(dir))
			if err != nil {
				t.Fatalf("open after the salvage: %v", err)
			}
			checkStore(t, s)
			must(t, s.Close())
		})
	}
}

// tabledStore is realStore with a fourth run of 20000 steps (≈ 5 MB of
// batches and metrics in 1 MiB memtables), so that the LSM tree has
// several tables
// (crashed: the image of the open store, as crashedStore).
func tabledStore(crashed bool) func(t *testing.T) string {
	return func(t *testing.T) string {
		t.Helper()
		s := realStore(t, t.TempDir())
		const seed, dim = 4, 10
		cfg := testConfig("d", dim)
		cfg.Seed, cfg.Steps, cfg.CheckpointEvery = seed, 20000, 5000
		must(t, s.CreateRun(cfg, testTheta0(seed, dim)))
		for k := 1; k <= cfg.Steps; k += 500 {
			appendSteps(t, s, "d", seed, k, k+499)
		}
		for k := 5000; k <= cfg.Steps; k += 5000 {
			must(t, s.PutCheckpoint("d", k, forwardTo(seed, dim, k)))
		}
		dir := s.opts.Dir
		if crashed {
			dir = t.TempDir()
			copyDir(t, s.opts.Dir, dir)
		}
		must(t, s.Close())
		return dir
	}
}

// olderVlog is the path of the oldest value-log file of a store that has
// more than one.
func olderVlog(t *testing.T, dir string) string {
	t.Helper()
	f, err := listStore(dir)
	if err != nil || len(f.vlogs) < 2 {
		t.Fatalf("value-log files %v (%v): want at least two", f.vlogs, err)
	}
	return filepath.Join(dir, f.vlogs[0])
}

// Value-log GC deletes the files it rewrote: a store that crashed after a
// GC (or with one running) is not refused for them, and one closed after it
// lists the files as they are.
func TestGCCollectedVlogNotDamage(t *testing.T) {
	s := realStore(t, t.TempDir())
	for _, name := range []string{"a", "b"} {
		must(t, s.DeleteRun(name))
	}
	before, _ := listStore(s.opts.Dir)
	must(t, s.GC())
	after, _ := listStore(s.opts.Dir)
	if len(after.vlogs) >= len(before.vlogs) || !s.gcRewrote.Load() {
		t.Fatalf("value-log files %v before GC, %v after: GC collected none, nothing to test", before.vlogs, after.vlogs)
	}
	img := t.TempDir()
	copyDir(t, s.opts.Dir, img)
	must(t, s.Close())
	for _, dir := range []string{img, s.opts.Dir} {
		s := openTest(t, dir)
		if runs, err := s.Runs(); err != nil || !slices.Equal(runs, []string{"c"}) {
			t.Fatalf("runs %v %v after GC, want c", runs, err)
		}
	}
}
