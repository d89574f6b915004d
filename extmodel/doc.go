// Package extmodel is the Go side of the operator protocol (docs/protocol.md,
// version 1): external models, each a child process that computes a model's
// initial state, chains of optimizer steps and evaluation measures, behind
// the model-family seam (package family) as the family "ext".
//
// A model is registered once, when the daemon starts (Family.Register, from
// replayd's --torch-model and --model-cmd): its first child says hello and
// the answer (the state's tensors, the data set sizes, the fingerprint) is
// kept, so Resolve and Size never talk to a child. An API request names a
// registered model ("ext:NAME"), never a command. Every later child's hello
// must match it: the same layout and data set sizes, and the same values of
// the fingerprint keys DataHash covers (the model file's and the data's
// hashes, the runtime); a child of a model file edited or data replaced
// under a running process is refused (ErrChanged), since the runs' data
// hash stands for the registered ones.
//
// Layout: θ is the hello's tensors in order (parameters and buffers, every
// tensor of the module's state_dict); after θ comes the optimizer state of
// the protocol's layout rule, whose buffers mirror the tensors marked param.
// Init is the child's init(seed) followed by a zero optimizer state.
//
// Round trips: every request has an id and a deadline (the start deadline
// for hello; CallTimeout, plus StepTimeout per step for apply). A child that
// dies, hangs past the deadline, answers anything but a well-formed reply
// with the request's id, or announces a frame over MaxFrame is SIGKILLed
// (with its process group) and the request fails with its last stderr lines
// (every stderr line also goes to the log prefixed "[NAME] "); the request is
// then retried on a fresh child, up to Options.Attempts times in a row (an
// idle child found dead when taken from the pool is dropped without costing
// an attempt: it failed no request). An
// `"ok": false` reply is not retried. A request whose context ends returns at
// once; its child finishes in the background within Options.CancelGrace (or
// is killed) and goes back to the pool only if its reply was well-formed,
// and that late reply is never copied into the caller's memory.
//
// Errors of operators and measurers: replay.Operators.Apply and
// family.Measurer.Measure have no error return, so the first failure of any
// operator or measurer of one Model is kept (sticky, shared by its clones)
// and reported by Err; the scheduler asks after every forward step, job and
// forward replay, and fails the run with the reason. After a failure the
// operators leave states unchanged and measures are NaN.
//
// Chains: Operators implements replay.Chainer, so a backward job of n − r
// steps is one apply round trip (replay.Direct uses it), and Verify replays a
// checkpoint interval in one (ReplayBatches).
//
// Determinism: the daemon keeps the batch log (the built-in sampler) and
// sends the step numbers and the seed with every chain; the numbers are the
// child's, bit for bit, on any child of the same fingerprint (the
// protocol's determinism rule), so a retried request on a fresh child gives
// the bits the failed one would have.
//
// Concurrency: Family and Model are safe for concurrent use; Operators and
// Measurer belong to one goroutine each (Clone). Each model has a bounded
// pool of children (Options.MaxChildren: the daemon's workers + 2), started
// lazily and reused; Close shuts them down (shutdown, then SIGKILL after
// the grace), also those still busy.
package extmodel
