package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"outpost.dev/outpost/internal/feedback"
)

// FeedbackPrefix starts the path of a dataset step that reads a
// deployment's labelled feedback samples: feedback:DEPLOYMENT.
const FeedbackPrefix = "feedback:"

// FeedbackSource gives dataset steps the samples of a deployment's
// requests whose true labels came back: a *feedback.Store.
type FeedbackSource interface {
	Labelled(ctx context.Context, deployment string, limit int) (*feedback.Set, error)
}

// labelledFeedback reads the labelled samples that path, feedback:DEPLOYMENT,
// names.
func (e *Engine) labelledFeedback(ctx context.Context, path string) (*feedback.Set, error) {
	dep := strings.TrimPrefix(path, FeedbackPrefix)
	if dep == "" {
		return nil, fmt.Errorf("path %q names no deployment (feedback:DEPLOYMENT)", path)
	}
	if e.opts.Feedback == nil {
		return nil, fmt.Errorf("path %s: this engine has no feedback store (the agent's, in its data directory)", path)
	}
	return e.opts.Feedback.Labelled(ctx, dep, 0)
}

// feedbackSource is the labelled feedback samples that path names, as a
// single set the step splits.
func (e *Engine) feedbackSource(ctx context.Context, path string) (*source, error) {
	set, err := e.labelledFeedback(ctx, path)
	if err != nil {
		return nil, err
	}
	if set.Len() == 0 {
		return nil, fmt.Errorf("%s: no labelled samples yet (send true labels to POST /v2/models/%s/feedback)",
			path, strings.TrimPrefix(path, FeedbackPrefix))
	}
	classes := 0
	for _, l := range set.Labels {
		classes = max(classes, int(l)+1)
	}
	t := &table{shape: set.Shape, f32: set.X, labels: set.Labels, classes: classes}
	return &source{train: t, what: fmt.Sprintf("%d labelled samples of %s", set.Len(), path)}, nil
}

// dataPath is the source a dataset step reads: its path param, else the
// run's data folder, else the engine's (Options.Data).
func dataPath(env *stepEnv) (string, error) {
	folder := env.run.opts.Data
	if folder == "" {
		folder = env.e.opts.Data
	}
	p := env.param("path", "")
	if p == "" {
		p = folder
	}
	if p == "" {
		return "", errors.New("no data to read: set the step's path param (a folder, a file, or " + BuiltinFashion +
			"), or give the run a data folder (outpost pipeline run --data DIR; the agent's --pipeline-data)")
	}
	if p == BuiltinFashion || strings.HasPrefix(p, FeedbackPrefix) || filepath.IsAbs(p) || folder == "" {
		return p, nil
	}
	return filepath.Join(folder, p), nil // relative to the data folder
}

// datasetFingerprint is the digest of the files the step reads (the
// regular files of its folder, or its file): new data misses the cache.
func datasetFingerprint(ctx context.Context, env *stepEnv) (string, error) {
	p, err := dataPath(env)
	if err != nil {
		return "", err
	}
	if p == BuiltinFashion {
		return p, nil
	}
	if strings.HasPrefix(p, FeedbackPrefix) {
		set, err := env.e.labelledFeedback(ctx, p)
		if err != nil {
			return "", err
		}
		return set.Fingerprint, nil
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("data: %w", err)
	}
	files := []string{p}
	if fi.IsDir() {
		names, err := dataFiles(p)
		if err != nil {
			return "", fmt.Errorf("data: %w", err)
		}
		files = files[:0]
		for _, n := range names {
			files = append(files, filepath.Join(p, n))
		}
	}
	h := sha256.New()
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00", filepath.Base(f))
		r, err := os.Open(f)
		if err != nil {
			return "", fmt.Errorf("data: %w", err)
		}
		n, err := io.Copy(h, r)
		r.Close()
		if err != nil {
			return "", fmt.Errorf("data: %w", err)
		}
		fmt.Fprintf(h, "\x00%d\x00", n)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// runDataset reads a labelled data set, samples and splits it, and stores
// the training and test sets as artifacts.
//
// Params: path (a folder or file; default the run's data folder; a
// relative path is inside it; builtin:fashion-mnist is the embedded
// subset; feedback:DEPLOYMENT the deployment's samples whose true labels
// came back to the inference endpoint), format (idx, npy, npz or csv; default: found out), split (the
// share of a single set that goes to training, default 0.8; a source with
// its own test set keeps it), sample (at most this many samples in all,
// drawn at random), seed (of the draw and the split, default 1), classes
// (the number of classes; default one above the largest label).
func runDataset(ctx context.Context, env *stepEnv) (map[string]string, error) {
	p, err := dataPath(env)
	if err != nil {
		return nil, err
	}
	format := env.param("format", "")
	switch format {
	case "", "idx", "npy", "npz", "csv":
	default:
		return nil, fmt.Errorf("param format: %q is none of idx, npy, npz, csv", format)
	}
	split, err := env.floatParam("split", 0.8)
	if err != nil || split >= 1 {
		return nil, fmt.Errorf("param split: %q is not a share between 0 and 1 (0.8 trains on 80%%)", env.param("split", ""))
	}
	sample, err := env.intParam("sample", 0, 1)
	if err != nil {
		return nil, err
	}
	seed, err := env.intParam("seed", 1, 0)
	if err != nil {
		return nil, err
	}
	classes, err := env.intParam("classes", 0, 1)
	if err != nil {
		return nil, err
	}
	var src *source
	if strings.HasPrefix(p, FeedbackPrefix) {
		src, err = env.e.feedbackSource(ctx, p)
	} else {
		src, err = readSource(p, format)
	}
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	train, test := src.train, src.test
	env.log.Printf("read %d samples of shape %v from %s", train.Len()+lenOf(test), train.shape, src.what)
	if test == nil {
		k := train.Len()
		if sample > 0 {
			k = min(k, sample)
		}
		idx := shuffled(train.Len(), uint64(seed))[:k]
		cut := int(float64(k)*split + 0.5)
		if cut < 1 || cut >= k {
			return nil, fmt.Errorf("split %v of %d samples leaves an empty training or test set", split, k)
		}
		train, test = train.pick(idx[:cut]), train.pick(idx[cut:])
	} else {
		if _, ok := env.step.Params["split"]; ok {
			env.log.Printf("param split ignored: the source has its own test set")
		}
		if n := train.Len() + test.Len(); sample > 0 && sample < n {
			kt := max(1, int(float64(sample)*float64(test.Len())/float64(n)+0.5))
			kt = min(kt, sample-1)
			train = train.pick(shuffled(train.Len(), uint64(seed))[:sample-kt])
			test = test.pick(shuffled(test.Len(), uint64(seed)+1)[:kt])
		}
	}
	if classes == 0 {
		classes = max(train.classes, test.classes)
	}
	for _, t := range []*table{train, test} {
		if err := t.setClasses(classes); err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
	}
	out := map[string]string{"samples": strconv.Itoa(train.Len() + test.Len())}
	for name, t := range map[string]*table{"train": train, "test": test} {
		b, err := t.marshalNPZ()
		if err != nil {
			return nil, err
		}
		d, err := env.e.layout.PutBytes(b)
		if err != nil {
			return nil, err
		}
		out[name] = d.String()
	}
	env.log.Printf("train: %d samples, test: %d samples, %d classes", train.Len(), test.Len(), classes)
	return out, nil
}

func lenOf(t *table) int {
	if t == nil {
		return 0
	}
	return t.Len()
}
