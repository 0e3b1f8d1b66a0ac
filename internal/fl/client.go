package fl

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"time"

	"outpost.dev/outpost/internal/secagg"
	"outpost.dev/outpost/internal/train"
)

// Client is one cluster's side of a job: it turns assignments into
// reports. It keeps the secure round's secrets in memory only; a client
// that restarts mid-round drops out of it. It is not safe for concurrent
// use.
type Client struct {
	cluster string
	rnd     io.Reader
	last    uint64 // the newest assignment version acted on
	sec     *secagg.Client
	secTag  string
}

// NewClient makes cluster's side of a job; rnd supplies secure
// aggregation's keys and masks, the stochastic rounding of Int8 and
// distributed DP noise (crypto/rand.Reader in use).
func NewClient(cluster string, rnd io.Reader) *Client {
	return &Client{cluster: cluster, rnd: rnd}
}

// Handle acts on an assignment with the global model it names (global's
// Ref must match a.Model), training on local data and checking the global
// model on val (nil: not checked). It returns the reports to send: none
// for an assignment already acted on (an older or the same version) or an
// Idle one.
func (c *Client) Handle(ctx context.Context, a Assignment, global GlobalModel, local, val train.Dataset) ([]Report, error) {
	if a.Cluster != c.cluster {
		return nil, fmt.Errorf("fl: assignment for %q reached client %q", a.Cluster, c.cluster)
	}
	if a.Version <= c.last {
		return nil, nil
	}
	c.last = a.Version
	base := Report{Job: a.Job, Cluster: c.cluster, Version: a.Version, Round: a.Round, Attempt: a.Attempt}
	needModel := func() error {
		if global.Ref != a.Model {
			return fmt.Errorf("fl: assignment v%d wants model %d %s, the client has %d %s", a.Version, a.Model.Round, short(a.Model.Digest), global.Ref.Round, short(global.Ref.Digest))
		}
		return nil
	}
	switch a.Phase {
	case Idle:
		c.sec, c.secTag = nil, ""
		return nil, nil
	case Train:
		if err := needModel(); err != nil {
			return nil, err
		}
		res, err := LocalTrain(ctx, a, global.Weights, local, val)
		if err != nil {
			return nil, err
		}
		if a.Clip > 0 {
			Clip(res.Delta, a.Clip)
		}
		v, err := c.encode(res.Delta, a)
		if err != nil {
			return nil, err
		}
		base.Kind = KindUpdate
		base.Update = &Update{BaseRound: a.Model.Round, Delta: v, Samples: res.Samples, LocalSteps: res.Steps, Metrics: res.Metrics}
		return []Report{base}, nil
	}
	sa := a.SecAgg
	if sa == nil {
		return nil, fmt.Errorf("fl: %s assignment v%d without secure aggregation data", a.Phase, a.Version)
	}
	if a.Phase != Advertise && (c.sec == nil || c.secTag != sa.Tag) {
		return nil, fmt.Errorf("fl: %s phase of secure round %s, which this client did not start (restarted?): it drops out", a.Phase, sa.Tag)
	}
	switch a.Phase {
	case Advertise:
		cl, err := secagg.NewClient(sa.Config(), sa.ID, c.rnd)
		if err != nil {
			return nil, err
		}
		c.sec, c.secTag = cl, sa.Tag
		k := cl.Advertise()
		base.Kind, base.Keys = KindKeys, &k
	case Share:
		sh, err := c.sec.ShareKeys(sa.Keys)
		if err != nil {
			return nil, err
		}
		base.Kind, base.Shares = KindShares, sh
	case Mask:
		if err := needModel(); err != nil {
			return nil, err
		}
		res, err := LocalTrain(ctx, a, global.Weights, local, val)
		if err != nil {
			return nil, err
		}
		x, err := c.secureInput(res, a)
		if err != nil {
			return nil, err
		}
		y, err := c.sec.MaskedInput(x, sa.Shares)
		if err != nil {
			return nil, err
		}
		base.Kind = KindMasked
		base.Masked = &Masked{Y: Ring{Bits: bitsOr32(sa.Bits), Words: y}, Samples: res.Samples, LocalSteps: res.Steps, Metrics: res.Metrics}
	case Unmask:
		rs, err := c.sec.Unmask(sa.Sent)
		if err != nil {
			return nil, err
		}
		base.Kind, base.Reveals = KindReveal, rs
	default:
		return nil, fmt.Errorf("fl: assignment phase %q", a.Phase)
	}
	return []Report{base}, nil
}

func (c *Client) rng() (*mrand.Rand, error) {
	var seed [32]byte
	if _, err := io.ReadFull(c.rnd, seed[:]); err != nil {
		return nil, fmt.Errorf("fl: randomness: %w", err)
	}
	return mrand.New(mrand.NewChaCha8(seed)), nil
}

// encode encodes a plain update; under a clip norm, an Int8 update whose
// rounding took it over the norm is shrunk until it is within.
func (c *Client) encode(delta [][]float32, a Assignment) (Vector, error) {
	rng, err := c.rng()
	if err != nil {
		return Vector{}, err
	}
	for range 50 {
		v, err := Encode(delta, a.Encoding, rng)
		if err != nil || a.Clip == 0 {
			return v, err
		}
		dec, err := Decode(v, Shape(delta))
		if err != nil {
			return Vector{}, err
		}
		if Norm(dec) <= a.Clip {
			return v, nil
		}
		Scale(delta, 0.99)
	}
	return Vector{}, errors.New("fl: cannot encode the update within the clip norm")
}

// bitsOr32 is a ring width, 0 read as 32.
func bitsOr32(b int) int {
	if b == 0 {
		return 32
	}
	return b
}

// secureInput is the vector a client masks: its update, clipped (DP),
// divided by its steps (Normalise), times its weight, plus its share of
// the noise (distributed DP), fixed-point encoded in the round's ring
// (rounded stochastically in a narrow one, and under central DP within
// the clip norm).
func (c *Client) secureInput(res TrainResult, a Assignment) ([]uint32, error) {
	sa := a.SecAgg
	d := res.Delta
	if a.Clip > 0 {
		Clip(d, a.Clip)
	}
	f := a.Weight
	if f == 0 {
		f = 1
	}
	if a.Normalise {
		f /= float64(res.Steps)
	}
	Scale(d, f)
	// One generator from the client's own randomness draws its share of
	// the noise and the stochastic rounding of a narrow ring, so that
	// what the update takes of that randomness does not depend on the
	// ring's width.
	rng, err := c.rng()
	if err != nil {
		return nil, err
	}
	if a.NoiseStd > 0 {
		AddNoise(d, a.NoiseStd, rng)
	}
	enc, err := secagg.NewEncoding(sa.Range, sa.N, sa.Bits)
	if err != nil {
		return nil, err
	}
	x := Flatten(d)
	if len(x) != sa.Length {
		return nil, fmt.Errorf("fl: an update of %d values, the round sums %d", len(x), sa.Length)
	}
	if a.Clip == 0 || a.NoiseStd > 0 || enc.Bits == 32 {
		return enc.Encode(x, rng)
	}
	// Central DP's noise is sized for sums of updates of norm at most the
	// clip; a narrow ring's stochastic rounding can take a clipped update
	// over it (by up to a step in every value), so a rounding that does is
	// drawn again, from the update shrunk a little, as plain int8 updates
	// are (encode).
	for range 50 {
		y, err := enc.Encode(x, rng)
		if err != nil {
			return nil, err
		}
		var sq float64
		for _, v := range enc.Decode(y) {
			sq += v * v
		}
		if math.Sqrt(sq) <= a.Clip {
			return y, nil
		}
		for i := range x {
			x[i] *= 0.99
		}
	}
	return nil, errors.New("fl: cannot encode the update within the clip norm")
}

// TrainResult is what local training produced.
type TrainResult struct {
	Delta   [][]float32
	Samples int
	Steps   int
	Metrics Metrics
}

// LocalTrain trains a copy of the global weights on local as a asks (SGD
// with momentum 0.9; LocalSteps steps, or LocalEpochs over the data; the
// proximal term of ProxMu) and returns the change of the weights. val,
// when not nil, measures the global model's accuracy on local data held
// out of training.
func LocalTrain(ctx context.Context, a Assignment, global [][]float32, local, val train.Dataset) (TrainResult, error) {
	l, tensors, err := NewLearner(a.Net, global, 1)
	if err != nil {
		return TrainResult{}, err
	}
	var m Metrics
	if val != nil && val.Len() > 0 {
		if m.Accuracy, err = l.Evaluate(val); err != nil {
			return TrainResult{}, err
		}
	}
	n := local.Len()
	if n == 0 {
		return TrainResult{}, errors.New("fl: no local training data")
	}
	bs := max(a.BatchSize, 1)
	perEpoch := (n + bs - 1) / bs
	opts := train.TrainOptions{Epochs: max(a.LocalEpochs, 1), BatchSize: bs, LR: a.LR, Optimizer: train.SGDMomentum,
		Seed: trainSeed(a)}
	if a.LocalSteps > 0 {
		opts.Epochs = (a.LocalSteps + perEpoch - 1) / perEpoch
		opts.MaxSteps = a.LocalSteps
	}
	if a.ProxMu > 0 {
		opts.ProxMu, opts.ProxRef = a.ProxMu, global
	}
	start := time.Now()
	st, err := l.Train(ctx, local, opts)
	if err != nil {
		return TrainResult{}, err
	}
	m.Seconds = time.Since(start).Seconds()
	m.Loss = st.FinalLoss()
	if math.IsNaN(m.Loss) || math.IsInf(m.Loss, 0) {
		return TrainResult{}, fmt.Errorf("fl: local training diverged (loss %v)", m.Loss)
	}
	return TrainResult{Delta: Sub(tensors, global), Samples: n, Steps: st.Steps, Metrics: m}, nil
}

func trainSeed(a Assignment) uint64 {
	h := sha256.Sum256(fmt.Appendf(nil, "%s %s %d %d", a.Job, a.Cluster, a.Round, a.Attempt))
	return binary.LittleEndian.Uint64(h[:8]) | 1
}
