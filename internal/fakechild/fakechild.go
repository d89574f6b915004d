// Package fakechild is a child process speaking the operator protocol
// (docs/protocol.md) written in Go, for tests: a test binary re-executes
// itself with EnvMode set and calls Main from TestMain, so the protocol
// client is tested against a real process over real pipes. Its model is a
// tiny deterministic map (Step), so tests can recompute every iterate.
//
// The mode (EnvMode, comma-separated words) makes it misbehave on purpose:
//
//	garbage     answer apply with bytes that are not a msgpack map
//	wrongid     answer apply with the wrong id
//	crash       write half a reply to apply, a stderr line, and exit 3
//	sigkill     write half a reply to apply, then SIGKILL itself
//	hang        never answer apply
//	refuse      answer apply with "ok": false
//	oversized   announce a 2 GiB apply reply
//	shortstate  answer apply with a state one float short
//	evalcrash   exit 4 at evaluate after a stderr line
//	version2    answer hello with version 2
//	badhello    exit 1 at hello after a stderr line
//	slowhello   sleep 10 s before answering hello
//	slowapply   sleep 300 ms before answering apply (then answer)
//
// With EnvOnce naming a file, the misbehaviour happens only in the child
// that removes that file first (a single fault across fresh children);
// with EnvAt = N, only from the N-th apply request on (counted in
// EnvCount's file, across children).
// Every apply request is counted in EnvCount's file (one line each).
package fakechild

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// The environment variables of the fake child.
const (
	// EnvRun = "1" makes a test binary the fake child (its TestMain
	// calls Main).
	EnvRun   = "EXTMODEL_FAKE_RUN"
	EnvMode  = "EXTMODEL_FAKE_CHILD"
	EnvOnce  = "EXTMODEL_FAKE_ONCE"
	EnvCount = "EXTMODEL_FAKE_COUNT"
	EnvAt    = "EXTMODEL_FAKE_AT"
)

// The fake model's layout: w [4] and b [2] are parameters, rm [2] a buffer
// (like BatchNorm's running mean); Train and Test examples, 10 classes.
const (
	Train   = 100
	Test    = 50
	Classes = 10
	Theta   = 8 // 4 + 2 + 2
	Params  = 6
)

// Target is the fake data: example i's target.
func Target(i int32) float32 { return float32(i%7) - 3 }

// Optim is the fake child's subset of the optimizer settings.
type Optim struct {
	Name     string
	Momentum float64
}

// Dim is the state length of an optimizer (the layout rule).
func Dim(opt string) int {
	switch opt {
	case "momentum", "nesterov":
		return Theta + Params + 1
	}
	return Theta
}

// Step applies one step k with batch b to state s in place: the gradient
// of the parameters is θ_j − mean(targets of b) + (k mod 3)/1000 (so the
// step number matters); plain SGD or heavy-ball momentum (torch's: m = g
// at t = 0, else m = μm + g; θ −= lr·m); the buffer tracks the batch mean.
func Step(s []float32, k int, b []int32, lr float32, o Optim) {
	var mean float32
	for _, i := range b {
		mean += Target(i)
	}
	mean /= float32(len(b))
	shift := float32(k%3) / 1000
	for j := 0; j < Params; j++ {
		g := s[j] - mean + shift
		if o.Name == "momentum" {
			m := &s[Theta+j]
			t := s[Theta+Params]
			if t == 0 {
				*m = g
			} else {
				*m = float32(o.Momentum)*(*m) + g
			}
			g = *m
		}
		s[j] -= lr * g
	}
	for j := Params; j < Theta; j++ {
		s[j] += 0.1 * (mean - s[j])
	}
	if o.Name == "momentum" {
		s[Theta+Params]++
	}
}

// Init is θ_0 of a seed.
func Init(seed uint64) []float32 {
	th := make([]float32, Theta)
	x := seed*6364136223846793005 + 1442695040888963407
	for j := range th {
		x = x*6364136223846793005 + 1442695040888963407
		th[j] = float32(int64(x>>40)%2000)/1000 - 1
	}
	return th
}

// Main runs the fake child on stdin/stdout until shutdown or EOF, then
// exits the process.
func Main() {
	mode := os.Getenv(EnvMode)
	code := serve(os.Stdin, os.Stdout, os.Stderr, mode)
	os.Exit(code)
}

func has(mode, word string) bool {
	for _, w := range strings.Split(mode, ",") {
		if w == word {
			return true
		}
	}
	return false
}

// faulty reports whether this child misbehaves now: always without
// EnvOnce, else only the child that removes the file.
func faulty() bool {
	f := os.Getenv(EnvOnce)
	if f == "" {
		return true
	}
	return os.Remove(f) == nil
}

// reached reports whether the apply count (EnvCount's lines) has reached
// EnvAt (always without EnvAt).
func reached() bool {
	at, err := strconv.Atoi(os.Getenv(EnvAt))
	if err != nil {
		return true
	}
	b, _ := os.ReadFile(os.Getenv(EnvCount))
	return bytes.Count(b, []byte("\n")) >= at
}

func serve(in io.Reader, out io.Writer, errw io.Writer, mode string) int {
	r := bufio.NewReader(in)
	w := bufio.NewWriter(out)
	fmt.Fprintln(errw, "fake child started, mode", mode)
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return 0 // stdin closed: exit
		}
		buf := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(r, buf); err != nil {
			return 2
		}
		var req map[string]any
		if err := msgpack.Unmarshal(buf, &req); err != nil {
			fmt.Fprintln(errw, "fake child: bad request:", err)
			return 2
		}
		op, _ := req["op"].(string)
		id := toInt(req["id"])
		rep := map[string]any{"id": id, "ok": true}
		switch op {
		case "hello":
			if has(mode, "badhello") {
				fmt.Fprintln(errw, "fake child: cannot load the model file")
				return 1
			}
			if has(mode, "slowhello") {
				time.Sleep(10 * time.Second)
			}
			v := 1
			if has(mode, "version2") {
				v = 2
			}
			rep["version"] = v
			rep["model"] = "fake"
			rep["tensors"] = []map[string]any{
				{"name": "w", "shape": []int{2, 2}, "dtype": "float32", "param": true},
				{"name": "b", "shape": []int{2}, "dtype": "float32", "param": true},
				{"name": "rm", "shape": []int{2}, "dtype": "float32", "param": false},
			}
			rep["train"], rep["test"], rep["classes"] = Train, Test, Classes
			rep["fingerprint"] = map[string]string{"impl": "fakechild", "argv": strings.Join(os.Args[1:], " "), "pythonpath": os.Getenv("PYTHONPATH")}
		case "init":
			rep["theta"] = f32b(Init(uint64(toInt(req["seed"]))))
		case "apply":
			if f := os.Getenv(EnvCount); f != "" {
				if fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
					fmt.Fprintln(fh, "apply")
					fh.Close()
				}
			}
			bad := mode != "" && reached() && faulty()
			switch {
			case bad && has(mode, "garbage"):
				w.Write([]byte{0, 0, 0, 3, 0x01, 0x02, 0x03})
				w.Flush()
				continue
			case bad && has(mode, "wrongid"):
				rep["id"] = id + 1
				rep["state"] = req["state"]
				writeMsg(w, rep)
				continue
			case bad && has(mode, "crash"):
				w.Write([]byte{0, 0, 1, 0, 0x82})
				w.Flush()
				fmt.Fprintln(errw, "fake child: segmentation fault (simulated)")
				return 3
			case bad && has(mode, "sigkill"):
				w.Write([]byte{0, 0, 1, 0, 0x82})
				w.Flush()
				fmt.Fprintln(errw, "fake child: killing myself")
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			case bad && has(mode, "hang"):
				fmt.Fprintln(errw, "fake child: hanging")
				select {}
			case bad && has(mode, "refuse"):
				rep = map[string]any{"id": id, "ok": false, "error": "optimizer lbfgs is not supported\nsecond line"}
				writeMsg(w, rep)
				continue
			case bad && has(mode, "shortstate"):
				st := req["state"].([]byte)
				rep["state"] = st[:len(st)-4]
				writeMsg(w, rep)
				continue
			case bad && has(mode, "oversized"):
				w.Write([]byte{0x80, 0, 0, 0})
				w.Flush()
				continue
			}
			if bad && has(mode, "slowapply") {
				time.Sleep(300 * time.Millisecond)
			}
			state := bf32(req["state"].([]byte))
			steps := bi32(req["steps"].([]byte))
			batches := bi32(req["batches"].([]byte))
			batch := int(toInt(req["batch"]))
			lr := float32(req["lr"].(float64))
			om := req["optimizer"].(map[string]any)
			o := Optim{Name: om["name"].(string), Momentum: om["momentum"].(float64)}
			losses := make([]float64, len(steps))
			for i, k := range steps {
				Step(state, int(k), batches[i*batch:(i+1)*batch], lr, o)
				losses[i] = float64(state[0])
			}
			rep["state"] = f32b(state)
			rep["losses"] = losses
		case "evaluate":
			if has(mode, "evalcrash") {
				fmt.Fprintln(errw, "fake child: out of memory in evaluate (simulated)")
				return 4
			}
			th := bf32(req["theta"].([]byte))
			rep["train_loss"] = meanSq(th, bi32(req["train"].([]byte)))
			rep["test_loss"] = meanSq(th, bi32(req["test"].([]byte)))
			rep["test_acc"] = 0.5
		case "shutdown":
			writeMsg(w, rep)
			return 0
		default:
			rep = map[string]any{"id": id, "ok": false, "error": "unknown op " + op}
		}
		writeMsg(w, rep)
	}
}

func meanSq(th []float32, idx []int32) float64 {
	var s float64
	for _, i := range idx {
		d := float64(th[0]) - float64(Target(i))
		s += d * d
	}
	return s / float64(max(1, len(idx)))
}

func writeMsg(w *bufio.Writer, m map[string]any) {
	b, err := msgpack.Marshal(m)
	if err != nil {
		panic(err)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	w.Write(hdr[:])
	w.Write(b)
	w.Flush()
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		return int64(x)
	}
	return -1
}

func f32b(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func bf32(b []byte) []float32 {
	x := make([]float32, len(b)/4)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return x
}

func bi32(b []byte) []int32 {
	x := make([]int32, len(b)/4)
	for i := range x {
		x[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return x
}
