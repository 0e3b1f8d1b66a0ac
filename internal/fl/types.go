package fl

import (
	"fmt"
	"math"
	"time"

	"outpost.dev/outpost/internal/secagg"
)

// Strategy is how updates become the next global model.
type Strategy string

// Strategies.
const (
	// FedAvg averages the clients' updates of a synchronous round, weighted
	// by their sample counts (McMahan et al., 2017).
	FedAvg Strategy = "fedavg"
	// FedProx is FedAvg whose local training adds the proximal term
	// μ/2·‖w − w_global‖² (Li et al., 2020).
	FedProx Strategy = "fedprox"
	// FedBuff is buffered asynchronous aggregation: clients train whenever
	// they are free, and every BufferSize updates, each weighted by
	// 1/sqrt(1+staleness), make a new model (Nguyen et al., 2022).
	FedBuff Strategy = "fedbuff"
)

// Encoding is how a client's update travels.
type Encoding string

// Encodings.
const (
	// Float32 sends each value as a little-endian float32.
	Float32 Encoding = "float32"
	// Int8 sends each value as a signed byte times a float32 scale per
	// tensor, rounded stochastically so that the decoded value's
	// expectation is the exact value (see Quantize).
	Int8 Encoding = "int8"
	// Auto lets the coordinator choose per cluster and round (see Plan).
	Auto Encoding = "auto"
)

// ModelSpec names the architecture every client trains: an MLP of Sizes
// (input first), or the CNN of internal/train.
type ModelSpec struct {
	Arch  string `json:"arch"` // "mlp" or "cnn"
	Sizes []int  `json:"sizes,omitempty"`
}

// SecAggSpec turns on secure aggregation (SecAgg+, internal/secagg).
type SecAggSpec struct {
	// K is the number of neighbours of each client (0: all others); T the
	// number of a client's neighbours needed to unmask it (0: K/2+1).
	K int `json:"k,omitempty"`
	T int `json:"t,omitempty"`
	// Range bounds every coordinate of a client's weighted update before
	// fixed-point encoding (0: 4; with DP, the clip norm).
	Range float64 `json:"range,omitempty"`
}

// DPSpec turns on differential privacy at the level of clients.
type DPSpec struct {
	// Clip is the L2 norm every client's update is clipped to.
	Clip float64 `json:"clip"`
	// NoiseMultiplier σ: the aggregate carries Gaussian noise of standard
	// deviation σ·Clip.
	NoiseMultiplier float64 `json:"noiseMultiplier"`
	// Delta is the δ at which ε is reported; EpsilonBudget stops the job
	// once the next round would spend more (0: no budget).
	Delta         float64 `json:"delta"`
	EpsilonBudget float64 `json:"epsilonBudget,omitempty"`
	// Distributed makes each of the clients add noise of variance
	// σ²C²/MinClients, so that any MinClients of them carry the full noise
	// and the coordinator adds none; else the coordinator adds it to the
	// (securely) aggregated sum.
	Distributed bool `json:"distributed,omitempty"`
}

// JobSpec is the coordinator's view of a federated job.
type JobSpec struct {
	Job      string    `json:"job"`
	Model    ModelSpec `json:"model"`
	Strategy Strategy  `json:"strategy"`
	// Rounds is the number of global models to make (FedBuff: of buffer
	// flushes).
	Rounds int `json:"rounds"`
	// MinClients is the fewest clients a round aggregates; Fraction the
	// share of the online clusters selected each round (0: all).
	MinClients int     `json:"minClients"`
	Fraction   float64 `json:"fraction,omitempty"`
	// Local training: epochs over the local data (or a step budget chosen
	// by the coordinator, see Adaptive), batch size, learning rate of SGD
	// with momentum 0.9, and FedProx's μ.
	LocalEpochs int     `json:"localEpochs"`
	BatchSize   int     `json:"batchSize"`
	LR          float64 `json:"lr"`
	ProxMu      float64 `json:"proxMu,omitempty"`
	// FedBuff: updates per aggregation, and the oldest base model accepted
	// (in versions behind the current one).
	BufferSize   int `json:"bufferSize,omitempty"`
	MaxStaleness int `json:"maxStaleness,omitempty"`
	// Weighting weighs a FedBuff update by its staleness (default Polynomial).
	Weighting Weighting `json:"weighting,omitempty"`
	// ServerLR scales every aggregate before it is applied (default 1, and
	// 0.5 for FedBuff). FedBuff wants it below 1 when many clusters train at once: each
	// buffer's updates were made from models the flushes before it already
	// moved, so the steps add up (measured below: 10 clusters, buffer 3,
	// 0.5 keeps test accuracy from swinging between 45% and 79%).
	ServerLR float64 `json:"serverLR,omitempty"`
	// SecAgg and DP are optional.
	SecAgg *SecAggSpec `json:"secagg,omitempty"`
	DP     *DPSpec     `json:"dp,omitempty"`
	// Encoding of updates (default Float32; Auto: chosen per cluster).
	Encoding Encoding `json:"encoding,omitempty"`
	// Adaptive chooses each cluster's local steps per upload from its
	// reported facts so that its upload fits RoundDeadline.
	Adaptive bool `json:"adaptive,omitempty"`
	// RoundDeadline bounds local training and upload; PhaseTimeout each
	// key exchange and unmasking phase of secure aggregation.
	RoundDeadline time.Duration `json:"roundDeadline"`
	PhaseTimeout  time.Duration `json:"phaseTimeout,omitempty"`
	// MaxRetries is how many times in a row a round may be abandoned
	// before the job fails (default 3).
	MaxRetries int `json:"maxRetries,omitempty"`
	// Seed draws client selection, the secure aggregation graph and the
	// initial model.
	Seed uint64 `json:"seed,omitempty"`
}

// ClusterFacts is what a cluster reports of itself.
type ClusterFacts struct {
	// BandwidthBps is the estimated upload bandwidth in bits per second.
	BandwidthBps float64 `json:"bandwidthBps"`
	// Online says whether the cluster is reachable now; OnlineFor how much
	// longer its current online window lasts (0: unknown).
	Online    bool          `json:"online"`
	OnlineFor time.Duration `json:"onlineFor,omitempty"`
	// SamplesPerSec is its training throughput; Samples its local training
	// set's size.
	SamplesPerSec float64 `json:"samplesPerSec"`
	Samples       int     `json:"samples"`
}

// Phase is where a cluster's assignment stands in a round.
type Phase string

// Phases of a round. Plain rounds have Train only; secure rounds go
// Advertise, Share, Mask, Unmask.
const (
	// Idle: nothing to do (not selected, or the job is over).
	Idle Phase = "idle"
	// Train: train on the global model and send an Update.
	Train Phase = "train"
	// Advertise: start the secure round (train meanwhile) and send keys.
	Advertise Phase = "advertise"
	// Share: send the encrypted shares for the neighbours listed.
	Share Phase = "share"
	// Mask: send the masked update, using the shares received.
	Mask Phase = "mask"
	// Unmask: reveal the shares the coordinator asks for.
	Unmask Phase = "unmask"
)

// ModelRef names a global model: the round that made it (0: the initial
// model) and the digest of its weights (Digest).
type ModelRef struct {
	Round  int    `json:"round"`
	Digest string `json:"digest"`
}

// Assignment is the coordinator's desired state for one cluster in one job.
// Version grows with every change; a cluster acts on the newest it sees.
type Assignment struct {
	Job     string `json:"job"`
	Cluster string `json:"cluster"`
	Version uint64 `json:"version"`
	Phase   Phase  `json:"phase"`
	// Round is the round (FedBuff: the assignment's sequence) the cluster
	// works in; Attempt counts retries of the round.
	Round   int `json:"round"`
	Attempt int `json:"attempt,omitempty"`
	// Model is the global model to train from, of architecture Net.
	Model ModelRef  `json:"model"`
	Net   ModelSpec `json:"net"`
	// Local work: steps (0: LocalEpochs over the local data), epochs,
	// batch, learning rate, FedProx μ; and the encoding of the upload.
	LocalSteps  int      `json:"localSteps,omitempty"`
	LocalEpochs int      `json:"localEpochs,omitempty"`
	BatchSize   int      `json:"batchSize"`
	LR          float64  `json:"lr"`
	ProxMu      float64  `json:"proxMu,omitempty"`
	Encoding    Encoding `json:"encoding"`
	// Normalise divides the update by its local steps before weighting
	// (FedNova; secure rounds only, the coordinator does it otherwise).
	Normalise bool `json:"normalise,omitempty"`
	// Weight multiplies the client's normalised update before secure
	// summing (its share of the round's samples); plain updates are
	// weighted by the coordinator.
	Weight float64 `json:"weight,omitempty"`
	// Clip (DP) is the norm the update is clipped to; NoiseStd the standard
	// deviation of the Gaussian noise the client adds to each coordinate
	// (distributed DP).
	Clip     float64 `json:"clip,omitempty"`
	NoiseStd float64 `json:"noiseStd,omitempty"`
	// Deadline is when the current phase times out.
	Deadline time.Time `json:"deadline"`
	// Reason says why the local work and encoding were chosen.
	Reason string `json:"reason,omitempty"`
	// SecAgg carries the secure round's data for the phase.
	SecAgg *SecAggAssignment `json:"secagg,omitempty"`
}

// SecAggAssignment is a cluster's part of a secure round.
type SecAggAssignment struct {
	// ID is the cluster's index among the round's N members; N, K, T,
	// Length, Seed, Tag and Bits make the secagg.Config; Range, N and Bits
	// the fixed-point encoding (secagg.NewEncoding(Range, N, Bits)).
	ID     int      `json:"id"`
	N      int      `json:"n"`
	K      int      `json:"k"`
	T      int      `json:"t"`
	Length int      `json:"length"`
	Seed   [32]byte `json:"seed"`
	Tag    string   `json:"tag"`
	Range  float64  `json:"range"`
	// Bits is the ring's width (0: 32; or 16): the masked vector is of
	// values below 2^Bits, and travels as Bits/8 bytes a value.
	Bits int `json:"bits,omitempty"`
	// Keys are the neighbours' advertised keys (Share phase); Shares the
	// shares sent to the cluster (Mask phase); Sent the senders among it and
	// its neighbours (Unmask phase).
	Keys   []secagg.Keys           `json:"keys,omitempty"`
	Shares []secagg.EncryptedShare `json:"shares,omitempty"`
	Sent   []int                   `json:"sent,omitempty"`
}

// Config returns the secagg configuration of the round.
func (s *SecAggAssignment) Config() secagg.Config {
	return secagg.Config{N: s.N, K: s.K, T: s.T, Length: s.Length, Round: []byte(s.Tag), Seed: s.Seed, Bits: s.Bits}
}

// ReportKind says which payload a Report carries.
type ReportKind string

// Report kinds.
const (
	KindFacts  ReportKind = "facts"
	KindUpdate ReportKind = "update"
	KindKeys   ReportKind = "keys"
	KindShares ReportKind = "shares"
	KindMasked ReportKind = "masked"
	KindReveal ReportKind = "reveal"
)

// Report is a message from a cluster to the coordinator (through its
// outbox). Version is the assignment it answers (not for facts).
type Report struct {
	Job     string     `json:"job"`
	Cluster string     `json:"cluster"`
	Kind    ReportKind `json:"kind"`
	Version uint64     `json:"version,omitempty"`
	Round   int        `json:"round,omitempty"`
	Attempt int        `json:"attempt,omitempty"`

	Facts   *ClusterFacts           `json:"facts,omitempty"`
	Update  *Update                 `json:"update,omitempty"`
	Keys    *secagg.Keys            `json:"keys,omitempty"`
	Shares  []secagg.EncryptedShare `json:"shares,omitempty"`
	Masked  *Masked                 `json:"masked,omitempty"`
	Reveals []secagg.Reveal         `json:"reveals,omitempty"`
}

// Metrics are what local training measured.
type Metrics struct {
	// Loss is the mean training loss of the last local epoch; Accuracy the
	// accuracy of the global model received on the local validation split.
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"`
	// Seconds of local training.
	Seconds float64 `json:"seconds"`
}

// Update is a plain (not securely aggregated) client update: the change
// of the weights from the base model, encoded.
type Update struct {
	BaseRound  int     `json:"baseRound"`
	Delta      Vector  `json:"delta"`
	Samples    int     `json:"samples"`
	LocalSteps int     `json:"localSteps"`
	Metrics    Metrics `json:"metrics"`
}

// Masked is a securely aggregated client's update: its weighted,
// normalised delta, fixed-point encoded and masked.
type Masked struct {
	Y          Ring    `json:"y"`
	Samples    int     `json:"samples"`
	LocalSteps int     `json:"localSteps"`
	Metrics    Metrics `json:"metrics"`
}

// GlobalModel is a model the coordinator made.
type GlobalModel struct {
	Ref ModelRef `json:"ref"`
	// Weights, one flat slice per tensor in the order of internal/train
	// (MLP: W0, B0, W1, B1, ...; CNN: conv1 W, B, conv2 W, B, fc W, B).
	Weights [][]float32 `json:"weights"`
	// Participants is how many clients' updates made it; Epsilon the ε
	// spent so far (DP jobs).
	Participants int     `json:"participants"`
	Epsilon      float64 `json:"epsilon,omitempty"`
}

// Validate checks the spec and fills its defaults; errors name the field.
func (s *JobSpec) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("fl: job %q: %s %v: %s", s.Job, field, v, want)
	}
	if s.Strategy == "" {
		s.Strategy = FedAvg
	}
	if s.Encoding == "" {
		s.Encoding = Float32
	}
	if s.MaxRetries == 0 {
		s.MaxRetries = 3
	}
	if s.LocalEpochs == 0 {
		s.LocalEpochs = 1
	}
	if s.BatchSize == 0 {
		s.BatchSize = 32
	}
	if s.PhaseTimeout == 0 {
		s.PhaseTimeout = s.RoundDeadline
	}
	if s.Weighting == "" {
		s.Weighting = Polynomial
	}
	if s.ServerLR == 0 {
		s.ServerLR = 1
		if s.Strategy == FedBuff {
			s.ServerLR = 0.5
		}
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case s.Job == "":
		return bad("job", `""`, "want a name")
	case s.Model.Arch != "mlp" && s.Model.Arch != "cnn":
		return bad("model.arch", s.Model.Arch, `want "mlp" or "cnn"`)
	case s.Model.Arch == "mlp" && len(s.Model.Sizes) < 2:
		return bad("model.sizes", s.Model.Sizes, "want at least an input and an output size")
	case s.Model.Arch == "mlp" && !sizesOK(s.Model):
		return bad("model.sizes", s.Model.Sizes, fmt.Sprintf("want sizes from 1, at most %d values", MaxParams))
	case s.Strategy != FedAvg && s.Strategy != FedProx && s.Strategy != FedBuff:
		return bad("strategy", s.Strategy, "want fedavg, fedprox or fedbuff")
	case s.Rounds < 1:
		return bad("rounds", s.Rounds, "want at least 1")
	case s.MinClients < 1:
		return bad("minClients", s.MinClients, "want at least 1")
	case s.Fraction < 0 || s.Fraction > 1 || !finite(s.Fraction):
		return bad("fraction", s.Fraction, "want 0 to 1")
	case s.LocalEpochs < 0:
		return bad("localEpochs", s.LocalEpochs, "want at least 1")
	case s.BatchSize < 0:
		return bad("batchSize", s.BatchSize, "want at least 1")
	case !(s.LR > 0) || !finite(s.LR):
		return bad("lr", s.LR, "want a positive learning rate")
	case !(s.ServerLR > 0) || !finite(s.ServerLR):
		return bad("serverLR", s.ServerLR, "want a positive rate")
	case s.ProxMu < 0 || !finite(s.ProxMu):
		return bad("proxMu", s.ProxMu, "want 0 or more")
	case s.Strategy == FedProx && s.ProxMu == 0:
		return bad("proxMu", s.ProxMu, "fedprox wants a positive μ")
	case s.Weighting != Polynomial && s.Weighting != Constant && s.Weighting != Hinge:
		return bad("weighting", s.Weighting, `want "polynomial", "constant" or "hinge"`)
	case s.Strategy == FedBuff && s.BufferSize < 1:
		return bad("bufferSize", s.BufferSize, "fedbuff wants at least 1")
	case s.Strategy == FedBuff && s.SecAgg != nil && s.BufferSize < 2:
		return bad("bufferSize", s.BufferSize, "fedbuff with secure aggregation sums cohorts of at least 2")
	case s.MaxStaleness < 0:
		return bad("maxStaleness", s.MaxStaleness, "want 0 or more")
	case s.Encoding != Float32 && s.Encoding != Int8 && s.Encoding != Auto:
		return bad("encoding", s.Encoding, "want float32, int8 or auto")
	case s.RoundDeadline <= 0:
		return bad("roundDeadline", s.RoundDeadline, "want a positive duration")
	case s.PhaseTimeout < 0:
		return bad("phaseTimeout", s.PhaseTimeout, "want a positive duration")
	case s.MaxRetries < 0:
		return bad("maxRetries", s.MaxRetries, "want 0 or more")
	}
	if a := s.SecAgg; a != nil {
		switch {
		case a.K < 0:
			return bad("secagg.k", a.K, "want 0 (all) or an even number of neighbours")
		case a.T < 0:
			return bad("secagg.t", a.T, "want 0 (k/2+1) or a threshold")
		case a.Range < 0 || !finite(a.Range):
			return bad("secagg.range", a.Range, "want a positive bound")
		case s.MinClients < 2:
			return bad("minClients", s.MinClients, "secure aggregation wants at least 2")
		}
	}
	if d := s.DP; d != nil {
		switch {
		case !(d.Clip > 0) || !finite(d.Clip):
			return bad("dp.clip", d.Clip, "want a positive norm")
		case d.NoiseMultiplier < 0 || !finite(d.NoiseMultiplier):
			return bad("dp.noiseMultiplier", d.NoiseMultiplier, "want 0 or more")
		case !(d.Delta > 0 && d.Delta < 1):
			return bad("dp.delta", d.Delta, "want 0 < δ < 1")
		case d.EpsilonBudget < 0 || !finite(d.EpsilonBudget):
			return bad("dp.epsilonBudget", d.EpsilonBudget, "want 0 (none) or more")
		case d.Distributed && s.SecAgg == nil:
			return bad("dp.distributed", d.Distributed, "distributed noise wants secure aggregation")
		}
	}
	return nil
}

func sizesOK(m ModelSpec) bool {
	_, err := m.Shape()
	return err == nil
}
