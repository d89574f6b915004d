package family

// DataHasher is an optional capability of a Family: the content hash of a
// loaded data set. The scheduler records it in a run's configuration when
// the run is created (ckpt.RunConfig.DataHash), and a remote worker
// computes it over the data it loaded itself: a worker whose data set
// differs refuses the run's jobs rather than compute numbers from other
// data (DESIGN §3). A family without it gives runs no hash, and workers
// then take their jobs unchecked.
//
// DataHash must be a pure function of the data's content as the family's
// operators and measures read it (not of a path, a file's time or its
// compression), so that two machines with the same data agree and one
// changed sample changes the hash. It is called outside the scheduler's
// locks and may take as long as reading the data once; data comes from
// LoadData of spec's key.
type DataHasher interface {
	DataHash(spec Spec, data Data) (string, error)
}
