package pipeline

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/internal/durable"
	"outpost.dev/outpost/internal/train"
)

// Training runs one epoch per Train call (train.MLP or train.CNN), the
// shuffle of epoch e drawn from (seed, e), and saves a checkpoint after
// each: the model's weights, which read back bit for bit (an MLP as ONNX, a
// CNN as its weights in gob), and the epochs done.
// An attempt cut anywhere (crash, preemption, timeout) resumes from the
// last checkpoint, and the weights it ends with are byte-identical to
// those of an attempt never cut. (The optimizer's moments start afresh
// each epoch, which is what makes an epoch's checkpoint all there is to
// resume from.)

// checkpointFile is the state of a training step's checkpoint.
const checkpointFile = "checkpoint.json"

// checkpoint is a training step's progress.
type checkpoint struct {
	// Key is the step's cache key: a checkpoint of other inputs or params
	// is not resumed.
	Key string `json:"key"`
	// Epochs is the number of epochs done.
	Epochs int `json:"epochs"`
	// Loss is each done epoch's mean loss.
	Loss []float64 `json:"loss"`
	// Kind is the model's architecture (learner.kind): a checkpoint of
	// another is not resumed.
	Kind string `json:"kind"`
	// Model is the file of the model after Epochs epochs, Digest its digest.
	Model  string        `json:"model"`
	Digest digest.Digest `json:"digest"`
}

// learner is a model a training step trains.
type learner interface {
	Train(ctx context.Context, ds train.Dataset, opts train.TrainOptions) (train.TrainStats, error)
	MarshalONNX(name string) ([]byte, error)
	// kind names the architecture, such as "mlp 784-128-10" or "cnn".
	kind() string
	// state encodes the weights exactly, for restore.
	state() ([]byte, error)
}

// mlp is a train.MLP as a learner; its state is its ONNX export.
type mlp struct{ *train.MLP }

func (m mlp) kind() string           { return "mlp " + sizesString(m.Sizes()) }
func (m mlp) state() ([]byte, error) { return m.MarshalONNX("checkpoint") }

// cnn is a train.CNN as a learner; its state is its weights in gob.
type cnn struct{ *train.CNN }

func (c cnn) kind() string { return "cnn" }
func (c cnn) state() ([]byte, error) {
	var b bytes.Buffer
	err := gob.NewEncoder(&b).Encode(c.CNN)
	return b.Bytes(), err
}

// restore decodes the state of a learner of kind k.
func restore(k string, b []byte) (learner, error) {
	if k == "cnn" {
		var c train.CNN
		if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&c); err != nil {
			return nil, err
		}
		return cnn{&c}, nil
	}
	m, err := train.ImportONNX(b)
	if err != nil {
		return nil, err
	}
	return mlp{m}, nil
}

// loadCheckpoint returns the step's checkpoint and model, or nil when it
// has none usable.
func loadCheckpoint(env *stepEnv) (*checkpoint, learner) {
	b, err := os.ReadFile(filepath.Join(env.ckptDir, checkpointFile))
	if err != nil {
		return nil, nil
	}
	var c checkpoint
	if err := json.Unmarshal(b, &c); err != nil || c.Key != env.cacheKey || filepath.Base(c.Model) != c.Model {
		env.log.Printf("checkpoint ignored: it is unreadable or of other inputs")
		return nil, nil
	}
	mb, err := os.ReadFile(filepath.Join(env.ckptDir, c.Model))
	if err != nil || digest.FromBytes(mb) != c.Digest {
		env.log.Printf("checkpoint ignored: its model file is missing or corrupt")
		return nil, nil
	}
	m, err := restore(c.Kind, mb)
	if err != nil {
		env.log.Printf("checkpoint ignored: %v", err)
		return nil, nil
	}
	return &c, m
}

// saveCheckpoint writes the model after epochs epochs, then the state
// naming it, each whole or not at all; the previous model file goes.
func saveCheckpoint(env *stepEnv, m learner, c *checkpoint) error {
	if err := os.MkdirAll(env.ckptDir, 0o755); err != nil {
		return err
	}
	b, err := m.state()
	if err != nil {
		return err
	}
	c.Kind = m.kind()
	c.Model = fmt.Sprintf("epoch-%d.state", c.Epochs)
	c.Digest = digest.FromBytes(b)
	if err := durable.WriteFile(filepath.Join(env.ckptDir, c.Model), b, 0o644); err != nil {
		return err
	}
	sb, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(env.ckptDir, checkpointFile), sb, 0o644); err != nil {
		return err
	}
	old := filepath.Join(env.ckptDir, fmt.Sprintf("epoch-%d.state", c.Epochs-1))
	if err := os.Remove(old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		env.log.Printf("remove old checkpoint: %v", err)
	}
	return nil
}

// trainParams are the options training steps share.
type trainParams struct {
	epochs, batch int
	lr            float64
	seed          uint64
}

func readTrainParams(env *stepEnv) (trainParams, error) {
	var p trainParams
	var err error
	if p.epochs, err = env.intParam("epochs", 1, 1); err != nil {
		return p, err
	}
	if p.batch, err = env.intParam("batchSize", 64, 1); err != nil {
		return p, err
	}
	if p.lr, err = env.floatParam("lr", 1e-3); err != nil {
		return p, err
	}
	seed, err := env.intParam("seed", 1, 0)
	p.seed = uint64(seed)
	return p, err
}

// fit trains m on data for the step's epochs, resuming from its checkpoint
// and saving one after every epoch, and returns the outputs model, loss and
// epochs. frozen layers stay as they are.
func fit(ctx context.Context, env *stepEnv, m learner, data *table, frozen int, p trainParams) (map[string]string, error) {
	c := &checkpoint{Key: env.cacheKey}
	if saved, sm := loadCheckpoint(env); saved != nil {
		if saved.Epochs > p.epochs || sm.kind() != m.kind() {
			env.log.Printf("checkpoint ignored: %d epochs of a %s model, the step trains %d of a %s", saved.Epochs, sm.kind(), p.epochs, m.kind())
		} else {
			c, m = saved, sm
			env.log.Printf("resuming from the checkpoint of epoch %d of %d", c.Epochs, p.epochs)
		}
	}
	batch := p.batch
	if g, r := env.granted.Memory, env.request.Memory; g > 0 && r > 0 && g < r {
		batch = max(1, int(int64(batch)*g/r))
		env.log.Printf("batch size %d instead of %d: granted memory %s of %s asked", batch, p.batch, bytesString(g), bytesString(r))
	}
	for e := c.Epochs; e < p.epochs; e++ {
		threads := env.threads()
		stats, err := m.Train(ctx, data, train.TrainOptions{
			Epochs: 1, BatchSize: batch, LR: p.lr, FrozenLayers: frozen, Workers: threads,
			Seed: p.seed<<20 | uint64(e+1),
		})
		if err != nil {
			if ctx.Err() != nil {
				env.log.Printf("epoch %d/%d stopped: %v; the checkpoint of epoch %d stays", e+1, p.epochs, context.Cause(ctx), e)
			}
			return nil, err
		}
		c.Epochs = e + 1
		c.Loss = append(c.Loss, stats.FinalLoss())
		if err := saveCheckpoint(env, m, c); err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
		env.log.Printf("epoch %d/%d: loss %.4f, %d threads, batch %d, %s; checkpoint saved", e+1, p.epochs, stats.FinalLoss(), threads, batch, stats.Duration.Round(1e6))
		if h := env.e.opts.afterEpoch; h != nil {
			h(ctx, env.step.Name, e+1)
		}
	}
	b, err := m.MarshalONNX(env.step.Name)
	if err != nil {
		return nil, err
	}
	d, err := env.e.layout.PutBytes(b)
	if err != nil {
		return nil, err
	}
	loss := "NaN"
	if n := len(c.Loss); n > 0 {
		loss = strconv.FormatFloat(c.Loss[n-1], 'f', 4, 64)
	}
	return map[string]string{"model": d.String(), "loss": loss, "epochs": strconv.Itoa(c.Epochs)}, nil
}

// parseSizes reads the sizes param ("784-128-10").
func parseSizes(s string) ([]int, error) {
	parts := strings.Split(s, "-")
	if len(parts) < 2 {
		return nil, fmt.Errorf("param sizes: %q: want layer sizes such as 784-128-10", s)
	}
	out := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 1<<16 {
			return nil, fmt.Errorf("param sizes: %q: %q is not a layer size", s, p)
		}
		out[i] = n
	}
	return out, nil
}

// runTrain trains a new multilayer perceptron on input data.
//
// Params: sizes (layer sizes, input first: default DIM-128-CLASSES),
// epochs (1), batchSize (64), lr (0.001), seed (1: the initial weights and
// the shuffles), threads (at most this many cores; default what the
// scheduler granted).
func runTrain(ctx context.Context, env *stepEnv) (map[string]string, error) {
	data, err := env.table("data")
	if err != nil {
		return nil, err
	}
	p, err := readTrainParams(env)
	if err != nil {
		return nil, err
	}
	switch arch := env.param("arch", "mlp"); arch {
	case "mlp":
	case "cnn":
		if _, ok := env.step.Params["sizes"]; ok {
			return nil, errors.New("param sizes: a cnn has fixed layers (two 3x3 convolutions, 8 and 16 channels, and a dense layer); sizes is for an mlp")
		}
		if side := train.CNNSide; data.Dim() != side*side {
			return nil, fmt.Errorf("param arch: a cnn takes %dx%d images (%d values a sample), the data has %d", side, side, side*side, data.Dim())
		}
		if data.classes > train.CNNClasses {
			return nil, fmt.Errorf("param arch: a cnn has %d outputs, the data %d classes", train.CNNClasses, data.classes)
		}
		env.log.Printf("training a cnn model on %d samples, %d epochs", data.Len(), p.epochs)
		return fit(ctx, env, cnn{train.NewCNN(max(p.seed, 1))}, data, 0, p)
	default:
		return nil, fmt.Errorf("param arch: %q is neither mlp nor cnn", arch)
	}
	sizes := []int{data.Dim(), 128, data.classes}
	if s, ok := env.step.Params["sizes"]; ok {
		if sizes, err = parseSizes(s); err != nil {
			return nil, err
		}
	}
	if sizes[0] != data.Dim() {
		return nil, fmt.Errorf("param sizes: the model takes %d inputs, the data has %d values per sample", sizes[0], data.Dim())
	}
	if sizes[len(sizes)-1] < data.classes {
		return nil, fmt.Errorf("param sizes: the model has %d outputs, the data %d classes", sizes[len(sizes)-1], data.classes)
	}
	m := train.NewMLP(sizes, max(p.seed, 1))
	env.log.Printf("training a %s model on %d samples, %d epochs", sizesString(sizes), data.Len(), p.epochs)
	return fit(ctx, env, mlp{m}, data, 0, p)
}

// runFinetune trains the last layers of a copy of a base model on input
// data: input model (an earlier step's), or param deployment (the version
// the cluster serves).
//
// Params: deployment, lastLayers (2: the layers trained, counted from the
// output), epochs, batchSize, lr, seed, threads as for train.
func runFinetune(ctx context.Context, env *stepEnv) (map[string]string, error) {
	data, err := env.table("data")
	if err != nil {
		return nil, err
	}
	p, err := readTrainParams(env)
	if err != nil {
		return nil, err
	}
	file, base, err := baseModel(ctx, env)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("base model: %w", err)
	}
	m, err := train.ImportONNX(b)
	if err != nil {
		return nil, fmt.Errorf("base model %s: %w", base, err)
	}
	if m.Inputs() != data.Dim() {
		return nil, fmt.Errorf("base model %s takes %d inputs, the data has %d values per sample", base, m.Inputs(), data.Dim())
	}
	if m.Classes() < data.classes {
		return nil, fmt.Errorf("base model %s has %d outputs, the data %d classes", base, m.Classes(), data.classes)
	}
	last, err := env.intParam("lastLayers", 2, 1)
	if err != nil {
		return nil, err
	}
	if last > len(m.Layers) {
		env.log.Printf("lastLayers %d: the model has %d layers; all train", last, len(m.Layers))
		last = len(m.Layers)
	}
	env.log.Printf("fine-tuning the last %d layers of %s (%s) on %d samples, %d epochs", last, base, sizesString(m.Sizes()), data.Len(), p.epochs)
	out, err := fit(ctx, env, mlp{m}, data, len(m.Layers)-last, p)
	if err != nil {
		return nil, err
	}
	out["base"] = base
	return out, nil
}

// baseModel returns the file of the model a step reads, from its input
// model or the version its param deployment serves, and what it is: the
// input's digest, or "model@version".
func baseModel(ctx context.Context, env *stepEnv) (file, what string, err error) {
	if _, ok := env.inputs["model"]; ok {
		f, err := env.artifact("model")
		return f, env.inputs["model"], err
	}
	dep := env.param("deployment", "")
	if dep == "" {
		return "", "", errors.New("no model: give input model or param deployment")
	}
	ref, err := activeModel(ctx, env, dep)
	if err != nil {
		return "", "", err
	}
	return ref.Path, ref.Name + "@" + ref.Version, nil
}

// activeModel asks the host what deployment serves.
func activeModel(ctx context.Context, env *stepEnv, deployment string) (ModelRef, error) {
	if env.host == nil {
		return ModelRef{}, fmt.Errorf("deployment %q: this engine has no host to ask which model it serves", deployment)
	}
	ref, err := env.host.ActiveModel(ctx, deployment)
	if err != nil {
		return ModelRef{}, fmt.Errorf("deployment %q: %w", deployment, err)
	}
	return ref, nil
}

// deploymentFingerprint is the digest of the model param deployment serves
// (a new version misses the cache), or "" when the step reads input model.
func deploymentFingerprint(ctx context.Context, env *stepEnv) (string, error) {
	if _, ok := env.step.Inputs["model"]; ok {
		return "", nil
	}
	dep := env.param("deployment", "")
	if dep == "" {
		return "", nil
	}
	ref, err := activeModel(ctx, env, dep)
	if err != nil {
		return "", err
	}
	return ref.Name + "@" + ref.Version + "@" + ref.Digest, nil
}

func sizesString(s []int) string {
	parts := make([]string, len(s))
	for i, n := range s {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, "-")
}
