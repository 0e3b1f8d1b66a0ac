package v1alpha1

import (
	"strings"
	"testing"
)

func TestCompressionPolicyValidate(t *testing.T) {
	good := func() *CompressionPolicy {
		return &CompressionPolicy{Spec: CompressionPolicySpec{Models: []string{"fashion"}, Data: CompressionData{Path: "/data/fmnist"}}}
	}
	tests := []struct {
		name   string
		change func(p *CompressionPolicy)
		field  string // "" for valid
	}{
		{"defaults", func(*CompressionPolicy) {}, ""},
		{"every model", func(p *CompressionPolicy) { p.Spec.Models = []string{AllModels} }, ""},
		{"edges", func(p *CompressionPolicy) {
			p.Spec.MaxAccuracyDrop, p.Spec.Recipes, p.Spec.Calibration = "100", []CompressionRecipe{"fp16", "student10"}, 1000000
		}, ""},
		{"no name", func(p *CompressionPolicy) { p.Name = "" }, "metadata.name"},
		{"no models", func(p *CompressionPolicy) { p.Spec.Models = nil }, "spec.models"},
		{"empty model", func(p *CompressionPolicy) { p.Spec.Models = []string{"fashion", ""} }, "spec.models[1]"},
		{"bad model", func(p *CompressionPolicy) { p.Spec.Models = []string{"Fashion"} }, "spec.models[0]"},
		{"edge model", func(p *CompressionPolicy) { p.Spec.Models = []string{"edge/ship/fashion"} }, "spec.models[0]"},
		{"no data", func(p *CompressionPolicy) { p.Spec.Data.Path = "" }, "spec.data.path"},
		{"format", func(p *CompressionPolicy) { p.Spec.Data.Format = "parquet" }, "spec.data.format"},
		{"drop word", func(p *CompressionPolicy) { p.Spec.MaxAccuracyDrop = "one" }, "spec.maxAccuracyDrop"},
		{"drop over 100", func(p *CompressionPolicy) { p.Spec.MaxAccuracyDrop = "100.5" }, "spec.maxAccuracyDrop"},
		{"drop negative", func(p *CompressionPolicy) { p.Spec.MaxAccuracyDrop = "-1" }, "spec.maxAccuracyDrop"},
		{"recipe", func(p *CompressionPolicy) { p.Spec.Recipes = []CompressionRecipe{"int4"} }, "spec.recipes[0]"},
		{"recipe twice", func(p *CompressionPolicy) { p.Spec.Recipes = []CompressionRecipe{"int8", "int8"} }, "spec.recipes[1]"},
		{"calibration", func(p *CompressionPolicy) { p.Spec.Calibration = -1 }, "spec.calibration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good()
			p.Name = "shrink"
			tt.change(p)
			err := p.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.field != "" && (err == nil || !strings.Contains(err.Error(), tt.field)):
				t.Fatalf("Validate: %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

func TestCompressionPolicyValues(t *testing.T) {
	var s CompressionPolicySpec
	if s.MaxAccuracyDropValue() != DefaultMaxAccuracyDrop || s.CalibrationValue() != DefaultCompressionCalibration || s.RecipeNames() != "all" {
		t.Errorf("defaults: drop %v, calibration %d, recipes %q", s.MaxAccuracyDropValue(), s.CalibrationValue(), s.RecipeNames())
	}
	s = CompressionPolicySpec{Models: []string{"a", "b/c"}, MaxAccuracyDrop: "0.5", Calibration: 64, Recipes: []CompressionRecipe{"fp16", "int8"}}
	if s.MaxAccuracyDropValue() != 0.5 || s.CalibrationValue() != 64 || s.RecipeNames() != "fp16,int8" {
		t.Errorf("set: drop %v, calibration %d, recipes %q", s.MaxAccuracyDropValue(), s.CalibrationValue(), s.RecipeNames())
	}
	for name, want := range map[string]bool{"a": true, "b/c": true, "b": false, "c": false} {
		if got := s.Matches(name); got != want {
			t.Errorf("Matches(%q) = %v", name, got)
		}
	}
	if s.Models = []string{AllModels}; !s.Matches("anything") {
		t.Error(`"*" matches no model`)
	}
}
