package extmodel

import (
	"slices"

	"github.com/replay-sgd/replay/api"
)

// ModelList is Models as the API's GET /v1/models answer.
func (f *Family) ModelList() api.ModelList {
	out := api.ModelList{Models: []api.ModelInfo{}}
	for _, m := range f.Models() {
		info := api.ModelInfo{Name: m.Name, Family: f.Name(), Model: m.Hello.Model, Theta: m.ThetaDim,
			Train: m.Hello.Train, Test: m.Hello.Test, Classes: m.Hello.Classes,
			Fingerprint: m.Hello.Fingerprint, Children: m.Children, Tensors: []api.ModelTensor{}}
		if info.Fingerprint == nil {
			info.Fingerprint = map[string]string{}
		}
		for _, t := range m.Hello.Tensors {
			info.Tensors = append(info.Tensors, api.ModelTensor{Name: t.Name, Shape: slices.Clone(t.Shape), DType: t.DType, Param: t.Param})
		}
		out.Models = append(out.Models, info)
	}
	return out
}
