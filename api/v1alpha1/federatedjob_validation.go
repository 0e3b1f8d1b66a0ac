package v1alpha1

import (
	"math"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"outpost.dev/outpost/internal/versions"
)

// Defaults of a FederatedJob, which its accessors return for fields left empty.
const (
	DefaultFederatedRounds          = 100 // with targetAccuracy and no rounds
	DefaultFederatedMinClients      = 2
	DefaultFederatedRoundTimeout    = 10 * time.Minute
	DefaultFederatedEpochs          = 1
	DefaultFederatedBatchSize       = 32
	DefaultFederatedLearningRate    = 0.05
	DefaultFederatedValidationSplit = 0.2
	DefaultFedProxMu                = 0.01
	DefaultFedBuffSize              = 2
	DefaultFedBuffMaxStaleness      = 5
	DefaultDPDelta                  = 1e-5
	maxFederatedRounds              = 10000
	maxFederatedClients             = 10000
)

// Default fills a job's defaults: none beyond what the zero values mean (the accessors
// below give each empty field's value).
func (j *FederatedJob) Default() {}

// OutputModel is the model the job's global models are pushed as.
func (j *FederatedJob) OutputModel() string {
	if j.Spec.Model.Output != "" {
		return j.Spec.Model.Output
	}
	return j.Name
}

// RoundVersion is the version of the global model round r makes.
func RoundVersion(r int) string { return "0." + strconv.Itoa(r) + ".0" }

// ArchValue is the model's architecture, or mlp.
func (m *FederatedModel) ArchValue() string {
	if m.Arch == "" {
		return ArchMLP
	}
	return m.Arch
}

// RoundsValue is the most rounds the job runs.
func (s *FederatedJobSpec) RoundsValue() int {
	if s.Rounds > 0 {
		return int(s.Rounds)
	}
	return DefaultFederatedRounds
}

// TargetAccuracyValue is the target accuracy, or 0 for none.
func (s *FederatedJobSpec) TargetAccuracyValue() float64 { return decimalOr(s.TargetAccuracy, 0) }

// MinValue is the fewest updates that close a round.
func (c *ClientSelection) MinValue() int { return intOr(c.Min, DefaultFederatedMinClients) }

// FractionValue is the share of clusters asked in a round.
func (c *ClientSelection) FractionValue() float64 { return decimalOr(c.Fraction, 1) }

// RoundTimeoutValue is how long a round waits for updates.
func (c *ClientSelection) RoundTimeoutValue() time.Duration {
	if c.RoundTimeout == nil || c.RoundTimeout.Duration <= 0 {
		return DefaultFederatedRoundTimeout
	}
	return c.RoundTimeout.Duration
}

// EpochsValue, BatchSizeValue and LearningRateValue are the local training settings.
func (t *LocalTraining) EpochsValue() int { return intOr(t.Epochs, DefaultFederatedEpochs) }

// BatchSizeValue is the local minibatch size.
func (t *LocalTraining) BatchSizeValue() int { return intOr(t.BatchSize, DefaultFederatedBatchSize) }

// LearningRateValue is the local learning rate.
func (t *LocalTraining) LearningRateValue() float64 {
	return decimalOr(t.LearningRate, DefaultFederatedLearningRate)
}

// ValidationSplitValue is the share of each cluster's examples held out.
func (d *FederatedData) ValidationSplitValue() float64 {
	return decimalOr(d.ValidationSplit, DefaultFederatedValidationSplit)
}

// TypeValue is the strategy, or FedAvg.
func (a *AggregationStrategy) TypeValue() Strategy {
	if a.Type == "" {
		return StrategyFedAvg
	}
	return a.Type
}

// MuValue is FedProx's proximal weight (0 for other strategies).
func (a *AggregationStrategy) MuValue() float64 {
	if a.TypeValue() != StrategyFedProx {
		return 0
	}
	return decimalOr(a.Mu, DefaultFedProxMu)
}

// BufferValue is FedBuff's buffer with its defaults filled.
func (a *AggregationStrategy) BufferValue() AsyncBuffer {
	b := AsyncBuffer{Size: DefaultFedBuffSize, StalenessWeighting: StalenessPolynomial}
	ms := int32(DefaultFedBuffMaxStaleness)
	if a.Buffer != nil {
		if a.Buffer.Size > 0 {
			b.Size = a.Buffer.Size
		}
		if a.Buffer.MaxStaleness != nil {
			ms = *a.Buffer.MaxStaleness
		}
		if a.Buffer.StalenessWeighting != "" {
			b.StalenessWeighting = a.Buffer.StalenessWeighting
		}
	}
	b.MaxStaleness = &ms
	return b
}

// EncodingValue is the update encoding, or Float32.
func (s *FederatedJobSpec) EncodingValue() UpdateEncoding {
	if s.Encoding == "" {
		return EncodingFloat32
	}
	return s.Encoding
}

// DeltaValue is δ, or its default.
func (p *DifferentialPrivacy) DeltaValue() float64 { return decimalOr(p.Delta, DefaultDPDelta) }

// Validate checks the job; each error names its field.
func (j *FederatedJob) Validate() error {
	errs := validateMeta(&j.ObjectMeta)
	errs = append(errs, j.Spec.Validate(field.NewPath("spec"))...)
	return invalid(KindFederatedJob, j.Name, errs)
}

// decimalIn parses s, a decimal at path p, and checks lo < v (or lo <= v with closedLo) and
// v <= hi; it appends an error saying so, in words, when it is not.
func decimalIn(errs field.ErrorList, p *field.Path, s string, lo float64, closedLo bool, hi float64, want string) field.ErrorList {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	switch {
	case err != nil || math.IsNaN(v) || math.IsInf(v, 0):
	case v < lo || (v == lo && !closedLo) || v > hi:
	default:
		return errs
	}
	return append(errs, field.Invalid(p, s, "must be "+want))
}

// Validate checks a job spec found at path sp.
func (s *FederatedJobSpec) Validate(sp *field.Path) field.ErrorList {
	var errs field.ErrorList
	mp := sp.Child("model")
	for _, n := range []struct {
		name, v string
		must    bool
	}{{"name", s.Model.Name, true}, {"output", s.Model.Output, false}} {
		switch {
		case n.v == "" && n.must:
			errs = append(errs, field.Required(mp.Child(n.name), "the initial model's name in the registry"))
		case n.v == "":
		case len(n.v) > maxModelNameLen:
			errs = append(errs, field.TooLong(mp.Child(n.name), "", maxModelNameLen))
		case !modelNamePattern.MatchString(n.v):
			errs = append(errs, field.Invalid(mp.Child(n.name), n.v, "must be lowercase letters and digits separated by '.', '_', '-' or '/'"))
		case strings.HasPrefix(n.v, EdgeRepositoryPrefix):
			errs = append(errs, field.Invalid(mp.Child(n.name), n.v, "a model produced at the edge is used once promoted"))
		}
	}
	if s.Model.Version == "" {
		errs = append(errs, field.Required(mp.Child("version"), "the initial model's exact version"))
	} else if len(s.Model.Version) > 128 {
		errs = append(errs, field.TooLong(mp.Child("version"), "", 128))
	} else if _, err := versions.ParseExact(s.Model.Version); err != nil {
		errs = append(errs, field.Invalid(mp.Child("version"), s.Model.Version, "must be an exact semantic version such as 1.0.0"))
	}
	switch s.Model.Arch {
	case "", ArchMLP, ArchCNN:
	default:
		errs = append(errs, field.NotSupported(mp.Child("arch"), s.Model.Arch, []string{ArchMLP, ArchCNN}))
	}

	cp := sp.Child("clusterSelectors")
	switch {
	case len(s.ClusterSelectors) == 0:
		errs = append(errs, field.Required(cp, "select the clusters that take part"))
	case len(s.ClusterSelectors) > MaxClusterSelectors:
		errs = append(errs, field.TooMany(cp, len(s.ClusterSelectors), MaxClusterSelectors))
	}
	for i := range s.ClusterSelectors {
		errs = append(errs, validateSelector(&s.ClusterSelectors[i], cp.Index(i))...)
	}

	dp := sp.Child("data")
	switch {
	case s.Data.Path == "":
		errs = append(errs, field.Required(dp.Child("path"), "the data set's folder on each cluster"))
	case len(s.Data.Path) > 4096:
		errs = append(errs, field.TooLong(dp.Child("path"), "", 4096))
	case strings.ContainsRune(s.Data.Path, 0):
		errs = append(errs, field.Invalid(dp.Child("path"), s.Data.Path, "must not contain NUL"))
	}
	switch s.Data.Format {
	case "", "idx", "npy", "csv":
	default:
		errs = append(errs, field.NotSupported(dp.Child("format"), s.Data.Format, []string{"idx", "npy", "csv"}))
	}
	if s.Data.ValidationSplit != "" {
		errs = decimalIn(errs, dp.Child("validationSplit"), s.Data.ValidationSplit, 0, false, 0.5, "a decimal in (0, 0.5], such as 0.2")
	}

	switch {
	case s.Rounds == 0 && s.TargetAccuracy == "":
		errs = append(errs, field.Required(sp.Child("rounds"), "set rounds, targetAccuracy or both"))
	case s.Rounds < 0 || s.Rounds > maxFederatedRounds:
		errs = append(errs, field.Invalid(sp.Child("rounds"), s.Rounds, "must be between 1 and 10000"))
	}
	if s.TargetAccuracy != "" {
		errs = decimalIn(errs, sp.Child("targetAccuracy"), s.TargetAccuracy, 0, false, 1, "a decimal in (0, 1], such as 0.8")
	}

	clp := sp.Child("clients")
	if s.Clients.Min < 0 || s.Clients.Min > maxFederatedClients {
		errs = append(errs, field.Invalid(clp.Child("min"), s.Clients.Min, "must be between 1 and 10000"))
	}
	if s.Clients.Fraction != "" {
		errs = decimalIn(errs, clp.Child("fraction"), s.Clients.Fraction, 0, false, 1, "a decimal in (0, 1], such as 0.5")
	}
	if d := s.Clients.RoundTimeout; d != nil && d.Duration < time.Second {
		errs = append(errs, field.Invalid(clp.Child("roundTimeout"), d.Duration.String(), "must be at least 1s"))
	}

	tp := sp.Child("training")
	if e := s.Training.Epochs; e < 0 || e > 100 {
		errs = append(errs, field.Invalid(tp.Child("epochs"), e, "must be between 1 and 100"))
	}
	if b := s.Training.BatchSize; b < 0 || b > 4096 {
		errs = append(errs, field.Invalid(tp.Child("batchSize"), b, "must be between 1 and 4096"))
	}
	if s.Training.LearningRate != "" {
		errs = decimalIn(errs, tp.Child("learningRate"), s.Training.LearningRate, 0, false, 10, "a decimal in (0, 10], such as 0.05")
	}

	stp := sp.Child("strategy")
	st := &s.Strategy
	switch st.Type {
	case "", StrategyFedAvg, StrategyFedProx, StrategyFedBuff:
	default:
		errs = append(errs, field.NotSupported(stp.Child("type"), st.Type, []Strategy{StrategyFedAvg, StrategyFedProx, StrategyFedBuff}))
	}
	if st.Mu != "" {
		if st.TypeValue() != StrategyFedProx {
			errs = append(errs, field.Forbidden(stp.Child("mu"), "mu is FedProx's: set type FedProx or remove mu"))
		} else {
			errs = decimalIn(errs, stp.Child("mu"), st.Mu, 0, false, 1000, "a positive decimal, such as 0.01")
		}
	}
	if b := st.Buffer; b != nil {
		bp := stp.Child("buffer")
		if st.TypeValue() != StrategyFedBuff {
			errs = append(errs, field.Forbidden(bp, "buffer is FedBuff's: set type FedBuff or remove buffer"))
		}
		if b.Size < 0 || b.Size > maxFederatedClients {
			errs = append(errs, field.Invalid(bp.Child("size"), b.Size, "must be between 1 and 10000"))
		}
		if m := b.MaxStaleness; m != nil && (*m < 0 || *m > 1000) {
			errs = append(errs, field.Invalid(bp.Child("maxStaleness"), *m, "must be between 0 and 1000"))
		}
		switch b.StalenessWeighting {
		case "", StalenessConstant, StalenessPolynomial, StalenessHinge:
		default:
			errs = append(errs, field.NotSupported(bp.Child("stalenessWeighting"), b.StalenessWeighting,
				[]StalenessWeighting{StalenessConstant, StalenessPolynomial, StalenessHinge}))
		}
	}

	if p := s.Privacy; p != nil {
		pp := sp.Child("privacy")
		for _, f := range []struct{ name, v, want string }{
			{"clipNorm", p.ClipNorm, "a positive decimal, such as 1.0"},
			{"noiseMultiplier", p.NoiseMultiplier, "a positive decimal, such as 1.1"},
			{"epsilon", p.Epsilon, "a positive decimal, such as 8"},
		} {
			if f.v == "" {
				errs = append(errs, field.Required(pp.Child(f.name), f.want))
				continue
			}
			errs = decimalIn(errs, pp.Child(f.name), f.v, 0, false, 1e6, f.want)
		}
		if p.Delta != "" {
			errs = decimalIn(errs, pp.Child("delta"), p.Delta, 0, false, 0.999999, "a decimal in (0, 1), such as 1e-5")
		}
	}

	switch s.Encoding {
	case "", EncodingFloat32, EncodingQuantized, EncodingAdaptive:
	default:
		errs = append(errs, field.NotSupported(sp.Child("encoding"), s.Encoding, []UpdateEncoding{EncodingFloat32, EncodingQuantized, EncodingAdaptive}))
	}
	return errs
}
