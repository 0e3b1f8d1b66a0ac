package v1alpha1

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const goodFederatedJob = `
apiVersion: ml.outpost.dev/v1alpha1
kind: FederatedJob
metadata: {name: fmnist-fl}
spec:
  model: {name: fmnist, version: 1.0.0, arch: mlp, output: fmnist-fl}
  clusterSelectors: [{matchLabels: {fl: "on"}}]
  data: {path: fmnist, format: idx, validationSplit: "0.2"}
  rounds: 5
  targetAccuracy: "0.8"
  clients: {min: 2, fraction: "0.5", roundTimeout: 2m}
  training: {epochs: 1, batchSize: 32, learningRate: "0.05"}
  strategy: {type: FedProx, mu: "0.01"}
  secureAggregation: true
  privacy: {clipNorm: "1.0", noiseMultiplier: "1.1", delta: 1e-5, epsilon: "8"}
  encoding: Quantized
`

func decodeFederatedJob(t *testing.T, s string) *FederatedJob {
	t.Helper()
	var j FederatedJob
	if err := yaml.UnmarshalStrict([]byte(s), &j); err != nil {
		t.Fatal(err)
	}
	return &j
}

func TestFederatedJobValid(t *testing.T) {
	j := decodeFederatedJob(t, goodFederatedJob)
	if err := j.Validate(); err != nil {
		t.Fatal(err)
	}
	fedbuff := decodeFederatedJob(t, goodFederatedJob)
	fedbuff.Spec.Strategy = AggregationStrategy{Type: StrategyFedBuff, Buffer: &AsyncBuffer{Size: 3, StalenessWeighting: StalenessHinge}}
	if err := fedbuff.Validate(); err != nil {
		t.Fatal(err)
	}
	minimal := decodeFederatedJob(t, `
kind: FederatedJob
metadata: {name: m}
spec:
  model: {name: fmnist, version: 1.0.0}
  clusterSelectors: [{}]
  data: {path: /data/fmnist}
  rounds: 3
`)
	if err := minimal.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestFederatedJobInvalid(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(j *FederatedJob)
		want   string // the field named, and part of the message
	}{
		{"no model", func(j *FederatedJob) { j.Spec.Model.Name = "" }, "spec.model.name: Required value"},
		{"bad model name", func(j *FederatedJob) { j.Spec.Model.Name = "FMNIST" }, `spec.model.name: Invalid value: "FMNIST"`},
		{"edge model", func(j *FederatedJob) { j.Spec.Model.Name = "edge/ship/m" }, `spec.model.name: Invalid value: "edge/ship/m": a model produced at the edge`},
		{"range version", func(j *FederatedJob) { j.Spec.Model.Version = ">=1.0.0" }, `spec.model.version: Invalid value: ">=1.0.0": must be an exact semantic version`},
		{"arch", func(j *FederatedJob) { j.Spec.Model.Arch = "resnet" }, `spec.model.arch: Unsupported value: "resnet"`},
		{"output", func(j *FederatedJob) { j.Spec.Model.Output = "Out put" }, `spec.model.output: Invalid value: "Out put"`},
		{"no selectors", func(j *FederatedJob) { j.Spec.ClusterSelectors = nil }, "spec.clusterSelectors: Required value"},
		{"too many selectors", func(j *FederatedJob) {
			j.Spec.ClusterSelectors = make([]metav1.LabelSelector, MaxClusterSelectors+1)
		}, "spec.clusterSelectors: Too many: 33: must have at most 32 items"},
		{"bad selector", func(j *FederatedJob) {
			j.Spec.ClusterSelectors[0] = metav1.LabelSelector{MatchLabels: map[string]string{"bad key!": "x"}}
		}, "spec.clusterSelectors[0]"},
		{"no data path", func(j *FederatedJob) { j.Spec.Data.Path = "" }, "spec.data.path: Required value"},
		{"data format", func(j *FederatedJob) { j.Spec.Data.Format = "parquet" }, `spec.data.format: Unsupported value: "parquet"`},
		{"validation split", func(j *FederatedJob) { j.Spec.Data.ValidationSplit = "0.9" }, `spec.data.validationSplit: Invalid value: "0.9": must be a decimal in (0, 0.5]`},
		{"neither rounds nor target", func(j *FederatedJob) { j.Spec.Rounds, j.Spec.TargetAccuracy = 0, "" }, "spec.rounds: Required value: set rounds, targetAccuracy or both"},
		{"rounds", func(j *FederatedJob) { j.Spec.Rounds = 10001 }, "spec.rounds: Invalid value: 10001"},
		{"target", func(j *FederatedJob) { j.Spec.TargetAccuracy = "1.5" }, `spec.targetAccuracy: Invalid value: "1.5"`},
		{"target not a number", func(j *FederatedJob) { j.Spec.TargetAccuracy = "high" }, `spec.targetAccuracy: Invalid value: "high"`},
		{"min clients", func(j *FederatedJob) { j.Spec.Clients.Min = -1 }, "spec.clients.min: Invalid value: -1"},
		{"fraction", func(j *FederatedJob) { j.Spec.Clients.Fraction = "0" }, `spec.clients.fraction: Invalid value: "0"`},
		{"round timeout", func(j *FederatedJob) { j.Spec.Clients.RoundTimeout = &metav1.Duration{Duration: time.Millisecond} }, "spec.clients.roundTimeout: Invalid value: \"1ms\": must be at least 1s"},
		{"epochs", func(j *FederatedJob) { j.Spec.Training.Epochs = 101 }, "spec.training.epochs: Invalid value: 101"},
		{"batch", func(j *FederatedJob) { j.Spec.Training.BatchSize = 5000 }, "spec.training.batchSize: Invalid value: 5000"},
		{"learning rate", func(j *FederatedJob) { j.Spec.Training.LearningRate = "-0.1" }, `spec.training.learningRate: Invalid value: "-0.1"`},
		{"strategy", func(j *FederatedJob) { j.Spec.Strategy.Type = "FedSGD" }, `spec.strategy.type: Unsupported value: "FedSGD"`},
		{"mu without FedProx", func(j *FederatedJob) { j.Spec.Strategy.Type = StrategyFedAvg }, "spec.strategy.mu: Forbidden: mu is FedProx's"},
		{"mu", func(j *FederatedJob) { j.Spec.Strategy.Mu = "0" }, `spec.strategy.mu: Invalid value: "0"`},
		{"buffer without FedBuff", func(j *FederatedJob) { j.Spec.Strategy.Buffer = &AsyncBuffer{Size: 2} }, "spec.strategy.buffer: Forbidden: buffer is FedBuff's"},
		{"staleness", func(j *FederatedJob) {
			ms := int32(-1)
			j.Spec.Strategy = AggregationStrategy{Type: StrategyFedBuff, Buffer: &AsyncBuffer{MaxStaleness: &ms}}
		}, "spec.strategy.buffer.maxStaleness: Invalid value: -1"},
		{"weighting", func(j *FederatedJob) {
			j.Spec.Strategy = AggregationStrategy{Type: StrategyFedBuff, Buffer: &AsyncBuffer{StalenessWeighting: "Linear"}}
		}, `spec.strategy.buffer.stalenessWeighting: Unsupported value: "Linear"`},
		{"clip norm", func(j *FederatedJob) { j.Spec.Privacy.ClipNorm = "" }, "spec.privacy.clipNorm: Required value"},
		{"noise", func(j *FederatedJob) { j.Spec.Privacy.NoiseMultiplier = "0" }, `spec.privacy.noiseMultiplier: Invalid value: "0"`},
		{"delta", func(j *FederatedJob) { j.Spec.Privacy.Delta = "1" }, `spec.privacy.delta: Invalid value: "1"`},
		{"epsilon", func(j *FederatedJob) { j.Spec.Privacy.Epsilon = "NaN" }, `spec.privacy.epsilon: Invalid value: "NaN"`},
		{"encoding", func(j *FederatedJob) { j.Spec.Encoding = "Float16" }, `spec.encoding: Unsupported value: "Float16"`},
		{"name", func(j *FederatedJob) { j.Name = "" }, "metadata.name: Required value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := decodeFederatedJob(t, goodFederatedJob)
			tc.mutate(j)
			err := j.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v\nwant an error containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), `FederatedJob "`) {
				t.Errorf("error %q does not name the kind", err)
			}
		})
	}
}

func TestFederatedJobValues(t *testing.T) {
	j := decodeFederatedJob(t, `
metadata: {name: m}
spec:
  model: {name: fmnist, version: 1.0.0}
  targetAccuracy: "0.8"
  strategy: {type: FedBuff}
`)
	s := &j.Spec
	b := s.Strategy.BufferValue()
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"rounds", s.RoundsValue(), DefaultFederatedRounds},
		{"target", s.TargetAccuracyValue(), 0.8},
		{"min", s.Clients.MinValue(), 2},
		{"fraction", s.Clients.FractionValue(), 1.0},
		{"timeout", s.Clients.RoundTimeoutValue(), 10 * time.Minute},
		{"epochs", s.Training.EpochsValue(), 1},
		{"batch", s.Training.BatchSizeValue(), 32},
		{"lr", s.Training.LearningRateValue(), 0.05},
		{"split", s.Data.ValidationSplitValue(), 0.2},
		{"mu", s.Strategy.MuValue(), 0.0},
		{"buffer size", b.Size, int32(2)},
		{"staleness", *b.MaxStaleness, int32(5)},
		{"weighting", b.StalenessWeighting, StalenessPolynomial},
		{"encoding", s.EncodingValue(), EncodingFloat32},
		{"arch", s.Model.ArchValue(), ArchMLP},
		{"output", j.OutputModel(), "m"},
		{"round version", RoundVersion(3), "0.3.0"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}
