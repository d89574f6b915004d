package nnfamily

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"math"

	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/nn"
)

var _ family.DataHasher = Family{}

// dataHashVersion names the encoding below: a change of it changes every
// hash (runs recorded with another version are refused by workers of this
// one, which is the safe side).
const dataHashVersion = "replay-data-v1"

// DataHash implements family.DataHasher: "sha256:" and the SHA-256 of the
// data set as loaded — for each split (training, then test) its shape,
// its inputs (Fashion-MNIST's pixel bytes, or the float32 bits of X), its
// targets and its labels, in sample order, little-endian. What is hashed
// is what the operators read, so a gzip level or a file's name does not
// count and one changed pixel does.
func (Family) DataHash(_ family.Spec, d family.Data) (string, error) {
	dd, ok := d.(data)
	if !ok || dd.train == nil || dd.test == nil {
		return "", fmt.Errorf("nnfamily: data of type %T", d)
	}
	h := sha256.New()
	h.Write([]byte(dataHashVersion))
	for _, s := range []*nn.Dataset{dd.train, dd.test} {
		hashSplit(h, s)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func hashSplit(h hash.Hash, d *nn.Dataset) {
	var b [8]byte
	putInt := func(n int) {
		binary.LittleEndian.PutUint64(b[:], uint64(n))
		h.Write(b[:])
	}
	h.Write([]byte(d.Name))
	h.Write([]byte{0})
	putInt(d.N)
	putInt(d.In)
	putInt(d.Out)
	// Each part is preceded by its length, so that moving a value from one
	// part to the next changes the hash.
	putInt(len(d.Pixels))
	h.Write(d.Pixels)
	hashFloats(h, d.X)
	hashFloats(h, d.Y)
	putInt(len(d.Labels))
	buf := make([]byte, 0, 4096)
	for _, l := range d.Labels {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(l))
		if len(buf) == cap(buf) {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	h.Write(buf)
}

func hashFloats(h hash.Hash, x []float32) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(len(x)))
	h.Write(b[:])
	buf := make([]byte, 0, 4096)
	for _, v := range x {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		if len(buf) == cap(buf) {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	h.Write(buf)
}
