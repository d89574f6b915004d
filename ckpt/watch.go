package ckpt

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// ErrStoreGone is wrapped by the error of every write after the store's
// directory was removed or replaced under the process: Badger would go on
// writing into deleted files (lost at exit) and retry its flushes forever.
var ErrStoreGone = errors.New("ckpt: store directory removed or replaced")

// dirCheckEvery is how often the directory's identity is checked.
const dirCheckEvery = 2 * time.Second

// watchDir notices that the directory is gone or is another one (its
// device and inode changed) and from then on refuses writes (gone).
func (s *Store) watchDir(id fileID) {
	defer s.wg.Done()
	t := time.NewTicker(dirCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if err := s.checkDir(id); err != nil {
			s.gone.Store(&err)
			s.log.Error("ckpt: writes stopped", "dir", s.opts.Dir, "err", err)
			return
		}
	}
}

func (s *Store) checkDir(id fileID) error {
	fi, err := os.Stat(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrStoreGone, s.opts.Dir, err)
	}
	if now, ok := idOf(fi); ok && now != id {
		return fmt.Errorf("%w: %s is another directory now (inode %d, was %d)", ErrStoreGone, s.opts.Dir, now.ino, id.ino)
	}
	return nil
}

// Gone is the error that stopped writes (ErrStoreGone), or nil.
func (s *Store) Gone() error {
	if p := s.gone.Load(); p != nil {
		return *p
	}
	return nil
}
