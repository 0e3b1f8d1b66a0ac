package cli

import (
	"reflect"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/serving"
)

func TestServingModels(t *testing.T) {
	port := int32(9001)
	tests := []struct {
		name   string
		active []agent.ActiveModel
		want   []serving.Model
		full   bool // every field of want[0] is set
	}{
		{name: "none", active: nil, want: []serving.Model{}},
		{
			name: "every field",
			active: []agent.ActiveModel{{
				Deployment: "fraud", Model: "fraud-mlp", Version: "2.1.0", Digest: "sha256:2",
				Files:       map[string]string{"model.onnx": "/cache/blobs/sha256/aa"},
				Serving:     v1alpha1.Serving{Runtime: v1alpha1.RuntimeONNXRuntime, Port: &port},
				ActivatedAt: time.Unix(1, 0),
			}, {Deployment: "fashion", Model: "fashion-mlp", Version: "1.0.0", Digest: "sha256:1"}},
			want: []serving.Model{{
				Deployment: "fraud", Model: "fraud-mlp", Version: "2.1.0", Digest: "sha256:2",
				Files:   map[string]string{"model.onnx": "/cache/blobs/sha256/aa"},
				Serving: v1alpha1.Serving{Runtime: v1alpha1.RuntimeONNXRuntime, Port: &port},
			}, {Deployment: "fashion", Model: "fashion-mlp", Version: "1.0.0", Digest: "sha256:1"}},
			full: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := servingModels(tt.active)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("servingModels = %+v, want %+v", got, tt.want)
			}
			if !tt.full {
				return
			}
			// A field added to serving.Model must be filled from the agent's too.
			v := reflect.ValueOf(got[0])
			for i := range v.NumField() {
				if v.Field(i).IsZero() {
					t.Errorf("serving.Model.%s is not set from the agent's active model", v.Type().Field(i).Name)
				}
			}
		})
	}
}
