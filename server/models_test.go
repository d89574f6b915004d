package server

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// TestModels: GET /v1/models answers the registered external models, and
// an empty list (not null) without any; other methods are 405.
func TestModels(t *testing.T) {
	h := newHarness(t, Options{})
	a := h.do(http.MethodGet, "/v1/models", nil)
	if a.code != http.StatusOK || string(a.body) != "{\"models\":[]}\n" {
		t.Fatalf("without models: %d %s", a.code, a.body)
	}
	want := api.ModelList{Models: []api.ModelInfo{{Name: "ext:cnn", Family: "ext", Theta: 10, Train: 5, Test: 3, Classes: 2,
		Tensors:     []api.ModelTensor{{Name: "0.weight", Shape: []int{2, 4}, DType: "float32", Param: true}, {Name: "0.bias", Shape: []int{2}, DType: "float32", Param: true}},
		Fingerprint: map[string]string{"torch": "1.13"}}}}
	h = newHarness(t, Options{Models: func() api.ModelList { return want }})
	a = h.do(http.MethodGet, "/v1/models", nil)
	var got api.ModelList
	if err := json.Unmarshal(a.body, &got); err != nil || a.code != http.StatusOK || len(got.Models) != 1 ||
		got.Models[0].Name != "ext:cnn" || got.Models[0].Tensors[0].Shape[1] != 4 || got.Models[0].Fingerprint["torch"] != "1.13" {
		t.Fatalf("models: %d %s (%v)", a.code, a.body, err)
	}
	if a := h.do(http.MethodPost, "/v1/models", nil); a.code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /v1/models: %d, want 405", a.code)
	}
}
