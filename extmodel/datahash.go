package extmodel

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

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
	for _, k := range hashedKeys(fp) {
		fmt.Fprintf(h, "%s=%s\x00", k, fp[k])
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashedKeys are the keys of a child's fingerprint that DataHash covers,
// in order: the model file's and the data set's hashes and the runtime
// that computes the bits too (DESIGN §3: torch's version, its threads and
// device) when the child reports the hashes, else every key.
func hashedKeys(fp map[string]string) []string {
	keys := []string{"model_sha256", "data_sha256", "torch", "threads", "device"}
	if fp["model_sha256"] == "" && fp["data_sha256"] == "" {
		keys = keys[:0]
		for k := range fp {
			keys = append(keys, k)
		}
		slices.Sort(keys)
	}
	return keys
}

// fingerprintChange names the keys DataHash covers whose values differ
// between the fingerprints a (the registration's) and b (a fresh
// child's), "" when none does.
func fingerprintChange(a, b map[string]string) string {
	var changed []string
	for _, k := range hashedKeys(a) {
		if v, ok := b[k]; !ok || v != a[k] {
			changed = append(changed, k)
		}
	}
	for _, k := range hashedKeys(b) {
		if _, ok := a[k]; !ok && !slices.Contains(changed, k) {
			changed = append(changed, k)
		}
	}
	return strings.Join(changed, ", ")
}
