package ckpt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/pb"
	"google.golang.org/protobuf/proto"
)

// Badger's MANIFEST file (manifest.go of badger v4.9): "Bdgr", the
// external magic version (Options.ExternalMagicVersion, 0), Badger's
// magic version, then change sets, each a big-endian length and CRC-32C
// of a pb.ManifestChangeSet.
const manifestMagicVersion = 8

// salvageManifest rebuilds a MANIFEST that is missing, cut, unreadable,
// lists no table beside tables or lists a table that is gone (Salvage
// mode, after the backup): without it Badger starts an empty store and
// deletes every table. Each table is a sorted run of versioned keys, and
// Badger reads level 0 as overlapping tables, taking the highest version
// of a key among them: so every table that reads back, listed at level 0,
// is the store again (Badger's compactions then sort them into levels).
// A table that does not read back is left out (Badger deletes it at open;
// the backup keeps it), and so is what the lost MANIFEST knew beyond the
// tables: nothing, in Badger v4 (the value log's head is a key). What the
// tables lack is reported by Verify afterwards.
func salvageManifest(dir string, log *slog.Logger) error {
	f, err := listStore(dir)
	if err != nil || len(f.ssts) == 0 {
		return err
	}
	why := ""
	switch mf, err := readManifest(dir); {
	case !f.manifest:
		why = "missing"
	case err != nil:
		var de *DamagedError
		if !errors.As(err, &de) {
			return err
		}
		why = de.Problem
	case len(mf.Tables) == 0:
		why = "lists no table"
	default:
		for id := range mf.Tables {
			if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("%06d.sst", id))); err != nil {
				why = fmt.Sprintf("lists %06d.sst, which is gone", id)
				break
			}
		}
	}
	if why == "" {
		return nil
	}
	var changes []*pb.ManifestChange
	for _, id := range f.ssts {
		name := fmt.Sprintf("%06d.sst", id)
		if _, err := checkTable(filepath.Join(dir, name), options.None); err != nil {
			log.Warn("ckpt: salvage: a table does not read back; leaving it out of the rebuilt MANIFEST (the backup keeps it)", "file", name, "err", err)
			continue
		}
		changes = append(changes, &pb.ManifestChange{
			Id: id, Op: pb.ManifestChange_CREATE, Level: 0,
			EncryptionAlgo: pb.EncryptionAlgo_aes, Compression: uint32(options.None),
		})
	}
	log.Warn("ckpt: salvage: rebuilding the MANIFEST from the tables", "dir", dir, "manifest", why, "tables", len(changes))
	buf, err := proto.Marshal(&pb.ManifestChangeSet{Changes: changes})
	if err != nil {
		return err
	}
	out := make([]byte, 16, 16+len(buf))
	copy(out, "Bdgr")
	binary.BigEndian.PutUint16(out[4:], 0)
	binary.BigEndian.PutUint16(out[6:], manifestMagicVersion)
	binary.BigEndian.PutUint32(out[8:], uint32(len(buf)))
	binary.BigEndian.PutUint32(out[12:], crc32.Checksum(buf, castagnoli))
	out = append(out, buf...)
	tmp := filepath.Join(dir, "MANIFEST.rebuilt")
	if err := writeSynced(tmp, out); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "MANIFEST")); err != nil {
		return err
	}
	return syncDir(dir)
}
