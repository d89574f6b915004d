package remote

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"

	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/nn"
	"github.com/replay-sgd/replay/scheduler"
)

// Names on the NATS server.
const (
	jobStream     = "REPLAY_JOBS"
	jobSubject    = "replay.jobs"
	resultStream  = "REPLAY_RESULTS"
	resultSubject = "replay.results"
	vectorBucket  = "replay-vectors"
	runBucket     = "replay-runs"
	cancelSubject = "replay.cancel"
	workerSubject = "replay.workers"
	dirSubject    = "replay.runs"
	daemonDurable = "daemon"
)

// jobMsg is a job on the wire: references only.
type jobMsg struct {
	Job scheduler.Job
	// Config is the run config's key in runBucket.
	Config string
	// Input names the vector the job starts from in vectorBucket: the
	// anchor start (Job.StartForward false) or the forward checkpoint at
	// step InputStep ≤ Job.StartStep.
	Input     string
	InputStep int
}

// resultMsg is a job's outcome on the wire.
type resultMsg struct {
	Job     scheduler.Job
	Metrics ckpt.Metrics
	Applied int
	Err     string
	// Cancelled: the job's generation was cancelled while it ran.
	Cancelled bool
	// Theta names θ̃ in vectorBucket ("" when cancelled or failed, or
	// when θ̃ is small enough to come in Vec).
	Theta string
	// Vec is θ̃'s bytes when they are at most inlineMax: a small model's
	// result costs one message instead of an object put, get and delete.
	Vec    []byte
	Worker string
	// Instance is the worker process's, random at each start: a worker
	// restarted under the same name (another binary, another machine) has
	// its first result checked again.
	Instance string
	// Delivery is how many times the job message had been delivered.
	Delivery uint64
}

// directory is the daemon's list of the runs whose jobs are queued, on
// dirSubject every heartbeatEvery and whenever a run is added: a worker
// binds to a run's consumer only after it has checked that its own data
// set is the run's (DataHash), so a worker whose data differs never
// receives a job of the run.
type directory struct {
	Runs []dirEntry
}

// dirEntry is one run of a directory.
type dirEntry struct {
	Run string
	// Config is the run config's key in runBucket.
	Config string
	// DataHash is the run's (ckpt.RunConfig.DataHash, "" when unknown).
	DataHash string
	// Consumer is the durable consumer of the run's jobs: one per
	// fingerprint and data hash (consumerName).
	Consumer string
}

// cancelMsg is a loop's Cancel.
type cancelMsg struct {
	Run string
	Gen uint64
}

// announce is a worker's heartbeat on workerSubject.
type announce struct {
	Name        string
	Fingerprint string // the description (FingerprintID is its subject token)
	Slots       int
	Done        int64
	Ops         int64
	Busy        int
	Stopping    bool
	// Refused lists the run configs (keys in runBucket) whose data set
	// differs on the worker: it takes none of their jobs.
	Refused []string
}

// inlineMax is the largest result vector sent inside its message (NATS
// messages are ≤ 1 MiB by default; a model's vector is MBs).
const inlineMax = 64 << 10

// encodeVec is v's little-endian bytes.
func encodeVec(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// decodeVec decodes b into a vector of dim parameters.
func decodeVec(b []byte, dim int) ([]float32, error) {
	if len(b) != 4*dim {
		return nil, fmt.Errorf("vector of %d bytes, want %d parameters", len(b), dim)
	}
	v := make([]float32, dim)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

func hashHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// inputName is the object name of an input vector's bytes.
func inputName(b []byte) string { return "in-" + hashHex(b) }

// resultName is the object name of a result: its identity and content, so
// that two deliveries of one job never clash with another job's result.
func resultName(id scheduler.JobID, b []byte) string {
	return fmt.Sprintf("res-%s-%x-%d-%d-%d-%s", token(id.Run), id.Generation, id.Segment, id.Step, id.Side, hashHex(b)[:16])
}

// dataToken is a data hash as one subject token ("unhashed" for runs
// recorded without one, which every worker takes).
func dataToken(dataHash string) string {
	if dataHash == "" {
		return "unhashed"
	}
	return hashHex([]byte(dataHash))[:16]
}

// consumerName is the durable consumer of the jobs of fingerprint token fp
// and data hash dataHash: workers of fingerprint fp bind to it once their
// data hash is dataHash.
func consumerName(fp, dataHash string) string { return "workers-" + fp + "-" + dataToken(dataHash) }

// jobSubjectOf is the subject of run's jobs for fingerprint token fp.
func jobSubjectOf(fp, dataHash, run string) string {
	return fmt.Sprintf("%s.%s.%s.%s", jobSubject, fp, dataToken(dataHash), token(run))
}

// token is a run name as one subject token (run names may hold dots).
func token(run string) string { return hashHex([]byte(run))[:16] }

// Fingerprint describes what decides the bits a process computes: the BLAS
// library (and OPENBLAS_CORETYPE, which picks OpenBLAS's kernel), the Go
// version, the architecture and the CPU model. Two processes with the same
// fingerprint compute the same bits.
func Fingerprint() string {
	return fmt.Sprintf("blas=%s coretype=%s go=%s arch=%s/%s cpu=%s",
		nn.BLASBackend(), os.Getenv("OPENBLAS_CORETYPE"), runtime.Version(), runtime.GOOS, runtime.GOARCH, cpuModel())
}

// anyToken is the fingerprint token of runs with fingerprint any, whose
// jobs workers of every fingerprint take (FingerprintID's tokens are hex,
// so it names no real fingerprint).
const anyToken = "any"

// FingerprintID is fingerprint's subject token.
func FingerprintID(fingerprint string) string { return hashHex([]byte(fingerprint))[:16] }

// cpuModel is /proc/cpuinfo's model name ("unknown" elsewhere).
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
