package extmodel

// The messages of docs/protocol.md, version 1. Requests are encoded from
// these structs (every field present); replies are decoded into them
// (unknown keys ignored, missing ones caught by the checks of each op).

// head is what every request carries.
type head struct {
	Op string `msgpack:"op"`
	ID int64  `msgpack:"id"`
}

// replyHead is what every reply carries. OK is a pointer so that a reply
// without "ok" is garbage, not a refusal.
type replyHead struct {
	ID    *int64 `msgpack:"id"`
	OK    *bool  `msgpack:"ok"`
	Error string `msgpack:"error"`
}

func (h *replyHead) head() *replyHead { return h }

// reply is implemented by every reply struct (through replyHead).
type reply interface{ head() *replyHead }

type helloRequest struct {
	head
	Version int `msgpack:"version"`
}

// TensorInfo is one tensor of the hello reply.
type TensorInfo struct {
	Name  string `msgpack:"name" json:"name"`
	Shape []int  `msgpack:"shape" json:"shape"`
	DType string `msgpack:"dtype" json:"dtype"`
	Param bool   `msgpack:"param" json:"param"`
}

// Elems is the number of elements of t.
func (t TensorInfo) Elems() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Hello is what a child announces: its protocol version, its model's name,
// the state layout, the data set sizes and its fingerprint.
type Hello struct {
	Version     int               `msgpack:"version"`
	Model       string            `msgpack:"model"`
	Tensors     []TensorInfo      `msgpack:"tensors"`
	Train       int               `msgpack:"train"`
	Test        int               `msgpack:"test"`
	Classes     int               `msgpack:"classes"`
	Fingerprint map[string]string `msgpack:"fingerprint"`
}

type helloReply struct {
	replyHead
	Hello
}

type initRequest struct {
	head
	Seed uint64 `msgpack:"seed"`
}

type initReply struct {
	replyHead
	Theta []byte `msgpack:"theta"`
}

// optimizerMsg is the apply request's optimizer map: every field present,
// torch.optim's meaning.
type optimizerMsg struct {
	Name        string  `msgpack:"name"`
	Momentum    float64 `msgpack:"momentum"`
	Dampening   float64 `msgpack:"dampening"`
	Beta1       float64 `msgpack:"beta1"`
	Beta2       float64 `msgpack:"beta2"`
	Eps         float64 `msgpack:"eps"`
	WeightDecay float64 `msgpack:"weight_decay"`
}

type applyRequest struct {
	head
	State     []byte       `msgpack:"state"`
	Batches   []byte       `msgpack:"batches"`
	Steps     []byte       `msgpack:"steps"`
	Batch     int          `msgpack:"batch"`
	Seed      uint64       `msgpack:"seed"`
	LR        float64      `msgpack:"lr"`
	Optimizer optimizerMsg `msgpack:"optimizer"`
}

func (r *applyRequest) size() int { return len(r.State) + len(r.Batches) + len(r.Steps) }

func (r *evaluateRequest) size() int { return len(r.Theta) + len(r.Train) + len(r.Test) }

type applyReply struct {
	replyHead
	State  []byte    `msgpack:"state"`
	Losses []float64 `msgpack:"losses"`
}

type evaluateRequest struct {
	head
	Theta []byte `msgpack:"theta"`
	Train []byte `msgpack:"train"`
	Test  []byte `msgpack:"test"`
}

type evaluateReply struct {
	replyHead
	TrainLoss *float64 `msgpack:"train_loss"`
	TestLoss  *float64 `msgpack:"test_loss"`
	TestAcc   *float64 `msgpack:"test_acc"`
}

type shutdownRequest struct{ head }

type shutdownReply struct{ replyHead }
