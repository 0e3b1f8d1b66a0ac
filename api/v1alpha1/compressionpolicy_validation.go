package v1alpha1

import (
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Defaults of a CompressionPolicy, which its accessors return for fields left empty.
const (
	DefaultMaxAccuracyDrop        = 1.0
	DefaultCompressionCalibration = 512
)

// Default fills a policy's defaults: none beyond what the zero values mean (the accessors
// below give each empty field's value).
func (p *CompressionPolicy) Default() {}

// MaxAccuracyDropValue is the accuracy budget in points.
func (s *CompressionPolicySpec) MaxAccuracyDropValue() float64 {
	return decimalOr(s.MaxAccuracyDrop, DefaultMaxAccuracyDrop)
}

// CalibrationValue is how many training samples calibrate int8.
func (s *CompressionPolicySpec) CalibrationValue() int {
	return intOr(s.Calibration, DefaultCompressionCalibration)
}

// RecipeNames is the recipes tried, comma-separated, or "all".
func (s *CompressionPolicySpec) RecipeNames() string {
	if len(s.Recipes) == 0 {
		return "all"
	}
	names := make([]string, len(s.Recipes))
	for i, r := range s.Recipes {
		names[i] = string(r)
	}
	return strings.Join(names, ",")
}

// Matches reports whether the policy compresses model name.
func (s *CompressionPolicySpec) Matches(name string) bool {
	return slices.Contains(s.Models, AllModels) || slices.Contains(s.Models, name)
}

// Validate checks the policy; each error names its field.
func (p *CompressionPolicy) Validate() error {
	errs := validateMeta(&p.ObjectMeta)
	errs = append(errs, p.Spec.Validate(field.NewPath("spec"))...)
	return invalid(KindCompressionPolicy, p.Name, errs)
}

// maxPolicyModels and maxPolicyRecipes bound a policy's lists.
const (
	maxPolicyModels  = 64
	maxPolicyRecipes = 16
)

// Validate checks a policy spec found at path sp.
func (s *CompressionPolicySpec) Validate(sp *field.Path) field.ErrorList {
	var errs field.ErrorList
	mp := sp.Child("models")
	switch {
	case len(s.Models) == 0:
		errs = append(errs, field.Required(mp, `the names of the models to compress, or "*" for all`))
	case len(s.Models) > maxPolicyModels:
		errs = append(errs, field.TooMany(mp, len(s.Models), maxPolicyModels))
	}
	for i, m := range s.Models {
		p := mp.Index(i)
		switch {
		case m == AllModels:
		case m == "":
			errs = append(errs, field.Required(p, `a model name, or "*"`))
		case len(m) > maxModelNameLen:
			errs = append(errs, field.TooLong(p, "", maxModelNameLen))
		case !modelNamePattern.MatchString(m):
			errs = append(errs, field.Invalid(p, m, `must be "*" or lowercase letters and digits separated by '.', '_', '-' or '/'`))
		case strings.HasPrefix(m, EdgeRepositoryPrefix):
			errs = append(errs, field.Invalid(p, m, "a model produced at the edge is compressed once promoted"))
		}
	}
	dp := sp.Child("data")
	switch {
	case s.Data.Path == "":
		errs = append(errs, field.Required(dp.Child("path"), "the labelled data set's folder on the hub's machine"))
	case len(s.Data.Path) > 4096:
		errs = append(errs, field.TooLong(dp.Child("path"), "", 4096))
	}
	switch s.Data.Format {
	case "", "idx", "npy", "npz", "csv":
	default:
		errs = append(errs, field.NotSupported(dp.Child("format"), s.Data.Format, []string{"idx", "npy", "npz", "csv"}))
	}
	if s.MaxAccuracyDrop != "" {
		errs = decimalIn(errs, sp.Child("maxAccuracyDrop"), s.MaxAccuracyDrop, 0, true, 100, "a decimal number of points from 0 to 100, such as \"1.0\"")
	}
	rp := sp.Child("recipes")
	if len(s.Recipes) > maxPolicyRecipes {
		errs = append(errs, field.TooMany(rp, len(s.Recipes), maxPolicyRecipes))
	}
	for i, r := range s.Recipes {
		switch {
		case !slices.Contains(compressionRecipes, string(r)):
			errs = append(errs, field.NotSupported(rp.Index(i), string(r), compressionRecipes))
		case slices.Contains(s.Recipes[:i], r):
			errs = append(errs, field.Duplicate(rp.Index(i), string(r)))
		}
	}
	if s.Calibration < 0 || s.Calibration > 1000000 {
		errs = append(errs, field.Invalid(sp.Child("calibration"), s.Calibration, "must be from 1 to 1000000 samples"))
	}
	return errs
}
