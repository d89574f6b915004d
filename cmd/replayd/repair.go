package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/scheduler"
)

// runRepair is `replayd repair --data-dir D`: for a store that Open refused
// (ckpt.DamagedError). It copies the store directory aside first, then
// opens it in salvage mode (Badger recovers what it can read, cutting what
// it cannot), recomputes missing checkpoints and verifies every run. It
// fails, naming the runs, when some run still has problems: their records
// are left as they are (the backup holds the original bytes).
func runRepair(args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stdout)
	if errors.Is(err, pflag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	dir := filepath.Join(cfg.dataDir, storeDirName)
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err != nil {
		if _, err2 := os.Stat(dir); err2 != nil {
			return fmt.Errorf("repair: no store in %s: %w", cfg.dataDir, err2)
		}
	}
	backup, err := backupName(dir + ".backup-" + time.Now().UTC().Format("20060102T150405Z"))
	if err != nil {
		return fmt.Errorf("repair: back up %s: %w", dir, err)
	}
	if err := copyTree(dir, backup); err != nil {
		return fmt.Errorf("repair: back up %s: %w", dir, err)
	}
	fmt.Fprintf(stdout, "backed up %s to %s\n", dir, backup)

	store, err := ckpt.Open(ckpt.DefaultOptions(dir).WithLogger(log).WithSalvage(true))
	if err != nil {
		return fmt.Errorf("repair: open %s (backup in %s): %w", dir, backup, err)
	}
	defer store.Close()
	// The external models given (--torch-model, --model-cmd, as to the
	// daemon) are registered, so that their runs are verified and their
	// missing checkpoints recomputed too; a run of a model not given
	// cannot be verified and is named as such.
	ext, err := startExtModels(context.Background(), cfg.ext, cfg.extModels, 2, log) // extmodels.go
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	defer ext.Close()
	sched, err := scheduler.New(store, scheduler.DefaultOptions().WithFamilies(modelFamilies(ext)...).WithDataDir(cfg.datasetDir).WithLogger(log))
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	var bad []string
	for _, st := range sched.List() {
		rep, err := sched.Repair(context.Background(), st.Name)
		switch {
		case err != nil:
			bad = append(bad, st.Name)
			fmt.Fprintf(stdout, "run %s: cannot verify: %v\n", st.Name, err)
		case !rep.OK:
			bad = append(bad, st.Name)
			fmt.Fprintf(stdout, "run %s: %d problem(s), first: %s\n", st.Name, len(rep.Problems), rep.Problems[0])
		default:
			fmt.Fprintf(stdout, "run %s: ok (%d checkpoints, %d steps re-executed%s)\n", st.Name, rep.Checkpoints, rep.Steps, repairedNote(rep.Repaired))
		}
	}
	if err := store.Close(); err != nil {
		return fmt.Errorf("repair: close %s: %w", dir, err)
	}
	if len(bad) > 0 {
		return fmt.Errorf("repair: runs %s still have problems (replayctl delete them, or restore %s)", strings.Join(bad, ", "), backup)
	}
	return nil
}

func repairedNote(steps []int) string {
	if len(steps) == 0 {
		return ""
	}
	return fmt.Sprintf(", checkpoints %v recomputed", steps)
}

// copyTree copies the regular files of dir (the store has no
// subdirectories) into a new directory to, each synced, mode 0600.
// backupName is base, or base-2, base-3 … when taken: a second repair in
// the same second (a first one without the external models, say) keeps
// the first one's backup and makes its own.
func backupName(base string) (string, error) {
	for i := 1; i < 1000; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		if _, err := os.Lstat(name); errors.Is(err, fs.ErrNotExist) {
			return name, nil
		} else if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("%s-2 … -999 all exist", base)
}

func copyTree(dir, to string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if err := os.Mkdir(to, 0o700); err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(dir, e.Name()), filepath.Join(to, e.Name())); err != nil {
			return err
		}
	}
	d, err := os.Open(to)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
