package extmodel

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/replay-sgd/replay/family"
)

var _ family.DataHasher = (*Family)(nil)

// DataHash implements family.DataHasher: the content hash of an external
// model's "data", what its child announced at hello — the state layout,
// the data set sizes and, of the fingerprint, the hashes of the model file
// and the data set when the child reports them (the Python worker's
// model_sha256 and data_sha256) with torch's version, threads and device,
// else the whole fingerprint. Runs and workers whose children differ in
// any of these compute different numbers, so a remote worker refuses them.
func (f *Family) DataHash(s family.Spec, d family.Data) (string, error) {
	r, ok := d.(*registered)
	if !ok {
		return "", fmt.Errorf("extmodel: data of type %T", d)
	}
	h := sha256.New()
	fmt.Fprintf(h, "ext protocol %d\x00train %d test %d classes %d\x00", Version, r.hello.Train, r.hello.Test, r.hello.Classes)
	for _, t := range r.hello.Tensors {
		fmt.Fprintf(h, "%s %v %s %v\x00", t.Name, t.Shape, t.DType, t.Param)
	}
	fp := r.hello.Fingerprint
	// The runtime that computes the bits too (DESIGN §3): torch's
	// version, its threads and device.
	keys := []string{"model_sha256", "data_sha256", "torch", "threads", "device"}
	if fp["model_sha256"] == "" && fp["data_sha256"] == "" {
		keys = keys[:0]
		for k := range fp {
			keys = append(keys, k)
		}
		slices.Sort(keys)
	}
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\x00", k, fp[k])
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
