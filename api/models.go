package api

import (
	"context"
	"net/http"
)

// ModelTensor is one tensor of a registered model's state (its state_dict
// entry).
type ModelTensor struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
	DType string `json:"dtype,omitempty"`
	// Param is true for the tensors the optimizer updates (the optimizer
	// state mirrors them); buffers such as BatchNorm's running statistics
	// are false.
	Param bool `json:"param"`
}

// ModelInfo is a registered external model (GET /v1/models): what its
// child announced at the daemon's start.
type ModelInfo struct {
	// Name is what a run spec's model names: "ext:NAME".
	Name string `json:"name"`
	// Family is the model family ("ext").
	Family string `json:"family"`
	// Model is the child's own name of its model (for logs).
	Model   string        `json:"model,omitempty"`
	Tensors []ModelTensor `json:"tensors"`
	// Theta is the length of the model's state θ (the tensors' elements).
	Theta   int `json:"theta"`
	Train   int `json:"train"`
	Test    int `json:"test"`
	Classes int `json:"classes"`
	// Fingerprint is the child's (torch version, threads, device, CPU…).
	Fingerprint map[string]string `json:"fingerprint"`
	// Children is the number of the model's child processes alive now.
	Children int `json:"children"`
}

// ModelList is the answer of GET /v1/models: the external models
// registered at the daemon's start (--torch-model, --model-cmd), in order.
type ModelList struct {
	Models []ModelInfo `json:"models"`
}

// Models returns the daemon's registered external models.
func (c *Client) Models(ctx context.Context) (ModelList, error) {
	var out ModelList
	err := c.getJSON(ctx, http.MethodGet, "/v1/models", nil, &out)
	return out, err
}
