package compress

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/onnxpb"
	"outpost.dev/outpost/internal/train"
)

// Data is what a search measures and trains with: Eval, labelled and held
// out, gives each candidate's accuracy; Train calibrates quantization and
// fine-tunes pruned models and students (it may be Eval's own training
// split, never Eval itself).
type Data struct {
	Train, Eval Dataset
	// Calibration is how many training samples calibrate int8 (default 512).
	Calibration int
}

// Recipe is one way to make a variant.
type Recipe struct {
	// Name names the variant ("int8", "fp16", "pruned50-int8", ...).
	Name string
	// Method and Params say what it does, as a variant records it.
	Method string
	Params map[string]string
	// Trained says the recipe retrains the model (pruning, distillation),
	// so it needs one that internal/train reads: an MLP or the CNN. Other
	// models skip it, saying so.
	Trained bool
	make    func(ctx context.Context, src *onnxpb.ModelProto, m source, teacher Session, d Data) (*onnxpb.ModelProto, error)
}

// rewrite makes a variant from an ONNX model.
type rewrite func(ctx context.Context, m *onnxpb.ModelProto, d Data) (*onnxpb.ModelProto, error)

// shrink makes a smaller model from the source's (with its Go runtime session as the teacher).
type shrink func(ctx context.Context, m source, teacher Session, d Data) (exporter, error)

// exporter is a model internal/train writes as ONNX.
type exporter interface {
	MarshalONNX(name string) ([]byte, error)
}

// source is the model a search starts from, as internal/train reads it,
// for the recipes that retrain it: mlpSource or cnnSource, each applying
// the methods to its kind of model with that kind's training settings.
type source interface {
	// pruned keeps the share keep of each hidden layer's units, or of each
	// convolution's channels, and fine-tunes.
	pruned(ctx context.Context, keep float64, d Data) (exporter, error)
	// sparse zeroes the share sparsity of the weights and fine-tunes.
	sparse(ctx context.Context, sparsity float64, d Data) (exporter, error)
	// student distils a student of the sizes that sizes gives from the
	// source's own (an MLP's hidden sizes, the CNN's two widths).
	student(ctx context.Context, teacher Session, sizes func(own []int) []int, d Data) (exporter, error)
	// ladder lists student sizes, from the widest down, for a search that
	// fits a student to a size; untrained makes a model of such sizes.
	ladder() [][]int
	untrained(sizes []int) (exporter, error)
}

// rungs is a ladder of student sizes: sizes(k) for each factor k that
// narrows the source, from 2 up.
func rungs(sizes func(k int) []int) [][]int {
	var out [][]int
	for _, k := range []int{2, 3, 4, 6, 8, 12, 16, 24, 32} {
		out = append(out, sizes(k))
	}
	return out
}

// readSource reads the model file b as internal/train's MLP or CNN.
func readSource(b []byte) (source, error) {
	m, mlpErr := train.ImportONNX(b)
	if mlpErr == nil {
		return mlpSource{m}, nil
	}
	c, cnnErr := train.ImportCNN(b)
	if cnnErr == nil {
		return cnnSource{c}, nil
	}
	return nil, fmt.Errorf("not a model internal/train reads: not an MLP (%v), nor a CNN (%v)", mlpErr, cnnErr)
}

// Distillation's settings, for every kind of student: the teacher's
// outputs softened to distilTemperature, weighted distilSoft against the
// labels.
const (
	distilTemperature = 4
	distilSoft        = 0.7
)

// mlpSource is an MLP source: its recipes fine-tune 2 epochs and distil 10.
type mlpSource struct{ *train.MLP }

func (m mlpSource) pruned(ctx context.Context, keep float64, d Data) (exporter, error) {
	return PruneUnits(ctx, m.MLP, keep, FineTune{Data: d.Train, Epochs: 2, Seed: 1})
}

func (m mlpSource) sparse(ctx context.Context, sparsity float64, d Data) (exporter, error) {
	return Sparsify(ctx, m.MLP, sparsity, FineTune{Data: d.Train, Epochs: 2, Seed: 1})
}

func (m mlpSource) student(ctx context.Context, teacher Session, sizes func([]int) []int, d Data) (exporter, error) {
	own := m.Sizes()
	return Distill(ctx, teacher, sizes(own[1:len(own)-1]), distilTemperature, distilSoft, FineTune{Data: d.Train, Epochs: 10, Seed: 1})
}

// ladder narrows every hidden layer alike.
func (m mlpSource) ladder() [][]int {
	own := m.Sizes()
	return rungs(func(k int) []int { return scaled(own[1:len(own)-1], k) })
}

func (m mlpSource) untrained(sizes []int) (exporter, error) {
	return train.NewMLP(append(append([]int{m.Inputs()}, sizes...), m.Classes()), 1), nil
}

// cnnSource is a CNN source: its pruned models fine-tune cnnFineTune
// epochs, its students train cnnStudentEpochs, at the learning rate
// cnnLR the zoo's CNN trained at.
type cnnSource struct{ *train.CNN }

const (
	cnnFineTune      = 5
	cnnStudentEpochs = 20
	cnnLR            = 3e-3
)

func (c cnnSource) pruned(ctx context.Context, keep float64, d Data) (exporter, error) {
	return PruneChannels(ctx, c.CNN, keep, FineTune{Data: d.Train, Epochs: cnnFineTune, LR: cnnLR, Seed: 1})
}

func (c cnnSource) sparse(context.Context, float64, Data) (exporter, error) {
	return nil, errors.New("unstructured pruning is for MLPs only: the CNN's training does not hold pruned weights at zero (train.TrainOptions.Masks)")
}

func (c cnnSource) student(ctx context.Context, teacher Session, sizes func([]int) []int, d Data) (exporter, error) {
	c1, c2 := c.Widths()
	w := sizes([]int{c1, c2})
	if len(w) != 2 {
		return nil, fmt.Errorf("compress: a student CNN has two widths, not the %d sizes %v", len(w), w)
	}
	return DistillCNN(ctx, teacher, w[0], w[1], distilTemperature, distilSoft, FineTune{Data: d.Train, Epochs: cnnStudentEpochs, LR: cnnLR, Seed: 1})
}

// ladder narrows the second convolution and keeps the first: the dense
// layer holds 49 weights per second-layer channel and class, a
// first-layer channel costs 9 (and 9 more per second-layer channel).
func (c cnnSource) ladder() [][]int {
	c1, c2 := c.Widths()
	return rungs(func(k int) []int { return []int{c1, max(1, c2/k)} })
}

func (c cnnSource) untrained(sizes []int) (exporter, error) {
	if len(sizes) != 2 || sizes[0] < 1 || sizes[1] < 1 {
		return nil, fmt.Errorf("compress: a student CNN has two widths of at least 1, not %v", sizes)
	}
	return train.NewCNNWidths(sizes[0], sizes[1], 1), nil
}

// scaled is sizes each divided by k, at least 1.
func scaled(sizes []int, k int) []int {
	out := make([]int, len(sizes))
	for i, h := range sizes {
		out[i] = max(1, h/k)
	}
	return out
}

// fittedStudent is a recipe that distils the widest student on the
// source's ladder whose int8 file is at most ratio of the source's, and
// quantizes it. The sizes are measured, not estimated: each rung is
// exported untrained and quantized until one fits.
func fittedStudent(ratio float64) func(context.Context, *onnxpb.ModelProto, source, Session, Data) (*onnxpb.ModelProto, error) {
	return func(ctx context.Context, src *onnxpb.ModelProto, sm source, teacher Session, d Data) (*onnxpb.ModelProto, error) {
		b, err := onnx.Marshal(src)
		if err != nil {
			return nil, err
		}
		limit := int(ratio * float64(len(b)))
		sizes, err := fit(ctx, src.GetGraph().GetName(), sm, limit, d)
		if err != nil {
			return nil, err
		}
		return then(distilTo(func([]int) []int { return sizes }), staticInt8(0))(ctx, src, sm, teacher, d)
	}
}

// fit returns the first sizes of m's ladder whose untrained model,
// quantized to int8, is at most limit bytes.
func fit(ctx context.Context, name string, m source, limit int, d Data) ([]int, error) {
	probe := Data{Train: d.Train, Calibration: 1}
	var smallest int
	for _, sizes := range m.ladder() {
		u, err := m.untrained(sizes)
		if err != nil {
			return nil, err
		}
		b, err := u.MarshalONNX(name)
		if err != nil {
			return nil, err
		}
		um, err := onnx.Unmarshal(b)
		if err != nil {
			return nil, err
		}
		q, err := staticInt8(0)(ctx, um, probe)
		if err != nil {
			return nil, err
		}
		qb, err := onnx.Marshal(q)
		if err != nil {
			return nil, err
		}
		if len(qb) <= limit {
			return sizes, nil
		}
		smallest = len(qb)
	}
	return nil, fmt.Errorf("no student fits in %d bytes: the narrowest tried is %d bytes in int8", limit, smallest)
}

// plain is a recipe that rewrites the source model.
func plain(f rewrite) func(context.Context, *onnxpb.ModelProto, source, Session, Data) (*onnxpb.ModelProto, error) {
	return func(ctx context.Context, src *onnxpb.ModelProto, _ source, _ Session, d Data) (*onnxpb.ModelProto, error) {
		return f(ctx, src, d)
	}
}

// then is a recipe that shrinks the source model, exports it to ONNX and, with f, rewrites that.
func then(mk shrink, f rewrite) func(context.Context, *onnxpb.ModelProto, source, Session, Data) (*onnxpb.ModelProto, error) {
	return func(ctx context.Context, src *onnxpb.ModelProto, sm source, teacher Session, d Data) (*onnxpb.ModelProto, error) {
		m, err := mk(ctx, sm, teacher, d)
		if err != nil {
			return nil, err
		}
		b, err := m.MarshalONNX(src.GetGraph().GetName())
		if err != nil {
			return nil, err
		}
		out, err := onnx.Unmarshal(b)
		if err != nil || f == nil {
			return out, err
		}
		return f(ctx, out, d)
	}
}

// staticInt8 calibrates (min-max, or percentile p) and quantizes.
func staticInt8(p float64) rewrite {
	return func(ctx context.Context, m *onnxpb.ModelProto, d Data) (*onnxpb.ModelProto, error) {
		r, err := Calibrate(ctx, m, d.Train, calib(d), Calibration{Percentile: p})
		if err != nil {
			return nil, err
		}
		return QuantizeInt8(m, r)
	}
}

func prune(keep float64) shrink {
	return func(ctx context.Context, m source, _ Session, d Data) (exporter, error) {
		return m.pruned(ctx, keep, d)
	}
}

func sparsify(sparsity float64) shrink {
	return func(ctx context.Context, m source, _ Session, d Data) (exporter, error) {
		return m.sparse(ctx, sparsity, d)
	}
}

// distilTo distils a student whose sizes sizes gives from the source's.
func distilTo(sizes func(source []int) []int) shrink {
	return func(ctx context.Context, m source, teacher Session, d Data) (exporter, error) {
		return m.student(ctx, teacher, sizes, d)
	}
}

func params(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// Recipes is the default recipe list, smallest gain first.
func Recipes() []Recipe {
	fp16 := func(_ context.Context, m *onnxpb.ModelProto, _ Data) (*onnxpb.ModelProto, error) {
		return Float16(m, 16)
	}
	dynamic := func(_ context.Context, m *onnxpb.ModelProto, _ Data) (*onnxpb.ModelProto, error) {
		return QuantizeDynamic(m)
	}
	tenth := func(src []int) []int { return scaled(src, 10) }
	return []Recipe{
		{Name: "fp16", Method: "float16", Params: params("weights", "float16"), make: plain(fp16)},
		{Name: "int8", Method: "int8-static", Params: params("calibration", "minmax", "weights", "per-channel"), make: plain(staticInt8(0))},
		{Name: "int8-dynamic", Method: "int8-dynamic", Params: params("activations", "dynamic", "weights", "per-column-7bit"), make: plain(dynamic)},
		{Name: "int8-p9999", Method: "int8-static", Params: params("calibration", "percentile", "percentile", "99.99", "weights", "per-channel"), make: plain(staticInt8(99.99))},
		{Name: "sparse80", Method: "prune-unstructured", Params: params("sparsity", "0.8"), Trained: true, make: then(sparsify(0.8), nil)},
		{Name: "pruned50", Method: "prune-structured", Params: params("keep", "0.5"), Trained: true, make: then(prune(0.5), nil)},
		{Name: "pruned50-int8", Method: "prune-structured+int8-static", Params: params("keep", "0.5", "calibration", "minmax"), Trained: true, make: then(prune(0.5), staticInt8(0))},
		{Name: "pruned35-int8", Method: "prune-structured+int8-static", Params: params("keep", "0.35", "calibration", "minmax"), Trained: true, make: then(prune(0.35), staticInt8(0))},
		{Name: "pruned25-int8", Method: "prune-structured+int8-static", Params: params("keep", "0.25", "calibration", "minmax"), Trained: true, make: then(prune(0.25), staticInt8(0))},
		{Name: "student10", Method: "distill", Params: params("hidden", "0.1", "temperature", "4", "soft", "0.7"), Trained: true, make: then(distilTo(tenth), nil)},
		{Name: "student10-int8", Method: "distill+int8-static", Params: params("size", "0.1", "temperature", "4", "soft", "0.7", "calibration", "minmax"), Trained: true, make: fittedStudent(0.1)},
	}
}

// StudentRecipe distils a student of the given hidden sizes (as many as the source MLP's
// hidden layers, or any number: the student need not have the teacher's depth), named
// "student-" and the sizes ("student-32-16"). From a CNN, the sizes are the student
// CNN's two widths.
func StudentRecipe(hidden []int) (Recipe, error) {
	if len(hidden) == 0 {
		return Recipe{}, fmt.Errorf("compress: a student needs at least one hidden size")
	}
	parts := make([]string, len(hidden))
	for i, h := range hidden {
		if h < 1 || h > 1<<16 {
			return Recipe{}, fmt.Errorf("compress: student hidden size %d: want 1 to 65536", h)
		}
		parts[i] = strconv.Itoa(h)
	}
	sizes := strings.Join(parts, "-")
	fixed := slices.Clone(hidden)
	return Recipe{Name: "student-" + sizes, Method: "distill", Params: params("hidden", strings.Join(parts, ","), "temperature", "4", "soft", "0.7"),
		Trained: true, make: then(distilTo(func([]int) []int { return fixed }), nil)}, nil
}

func calib(d Data) int {
	if d.Calibration > 0 {
		return d.Calibration
	}
	return 512
}

// Candidate is one variant a search made and measured.
type Candidate struct {
	Name   string
	Method string
	Params map[string]string
	// Bytes is the variant's ONNX file size; Ratio that over the source's.
	Bytes int
	Ratio float64
	// Accuracy on Data.Eval, and Drop from the source's, in points.
	Accuracy, Drop float64
	// Latency in the Go runtime at batch 1 and 32 (median of a few runs);
	// ORTLatency1 and 32 in ONNX Runtime, where the caller measured them.
	Latency1, Latency32       time.Duration
	ORTLatency1, ORTLatency32 time.Duration
	// Memory is the most the Go runtime's heap holds to serve the model
	// one batch-32 request at a time (see servingMemory).
	Memory int64
	// Ops lists the operators of the variant's graph.
	Ops []string
	// Within says the drop is within the budget; Pareto that no other
	// candidate within the budget is both smaller and more accurate.
	Within, Pareto bool
	// Skipped says why the recipe made no variant ("" when it did).
	Skipped string
	// Model is the variant's ONNX file.
	Model []byte `json:"-"`
}

// Progress is told of each recipe as the search starts it.
type Progress func(i, n int, recipe string)

// Search makes a variant of src by each recipe, measures it on d, and
// returns the candidates, the source's own first (Name "full"). Recipes
// that cannot apply to src are kept with Skipped saying why; an error that
// is not about src ends the search.
func Search(ctx context.Context, src *onnxpb.ModelProto, recipes []Recipe, d Data, budget float64, progress Progress) ([]Candidate, error) {
	if d.Eval == nil || d.Eval.Len() == 0 {
		return nil, errors.New("compress: no labelled evaluation data")
	}
	if d.Train == nil || d.Train.Len() == 0 {
		return nil, errors.New("compress: no training data to calibrate and fine-tune with")
	}
	if !(budget >= 0) {
		return nil, fmt.Errorf("compress: accuracy budget %v points: want 0 or more", budget)
	}
	srcBytes, err := onnx.Marshal(src)
	if err != nil {
		return nil, err
	}
	full, err := measure(ctx, "full", srcBytes, d.Eval)
	if err != nil {
		return nil, fmt.Errorf("compress: the source model: %w", err)
	}
	full.Method, full.Ratio, full.Within = "none", 1, true
	teacher, err := interp.Load(srcBytes)
	if err != nil {
		return nil, err
	}
	sm, smErr := readSource(srcBytes)
	out := []Candidate{full}
	for i, r := range recipes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if progress != nil {
			progress(i+1, len(recipes), r.Name)
		}
		c := Candidate{Name: r.Name, Method: r.Method, Params: r.Params}
		if r.Trained && smErr != nil {
			c.Skipped = smErr.Error()
			out = append(out, c)
			continue
		}
		m, err := r.make(ctx, src, sm, teacher, d)
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		if err != nil {
			c.Skipped = err.Error()
			out = append(out, c)
			continue
		}
		b, err := onnx.Marshal(m)
		if err != nil {
			return nil, err
		}
		mc, err := measure(ctx, r.Name, b, d.Eval)
		if err != nil {
			c.Skipped = err.Error()
			out = append(out, c)
			continue
		}
		mc.Method, mc.Params = r.Method, r.Params
		mc.Ratio = float64(mc.Bytes) / float64(full.Bytes)
		mc.Drop = 100 * (full.Accuracy - mc.Accuracy)
		mc.Within = mc.Drop <= budget
		out = append(out, mc)
	}
	MarkPareto(out)
	return out, nil
}

// MarkPareto sets Pareto on the candidates within the budget that no other
// such candidate dominates: at most as large and at least as accurate, and
// better in one of the two.
func MarkPareto(cs []Candidate) {
	for i := range cs {
		cs[i].Pareto = false
		if !cs[i].Within || cs[i].Skipped != "" {
			continue
		}
		cs[i].Pareto = true
		for j := range cs {
			if i == j || !cs[j].Within || cs[j].Skipped != "" {
				continue
			}
			a, b := cs[i], cs[j]
			if b.Bytes <= a.Bytes && b.Accuracy >= a.Accuracy && (b.Bytes < a.Bytes || b.Accuracy > a.Accuracy) {
				cs[i].Pareto = false
				break
			}
		}
	}
}

// measure loads model b in the Go runtime and measures it.
func measure(ctx context.Context, name string, b []byte, eval Dataset) (Candidate, error) {
	c := Candidate{Name: name, Bytes: len(b), Model: b}
	s, err := interp.Load(b)
	if err != nil {
		return c, err
	}
	if c.Accuracy, err = Accuracy(ctx, s, eval, 256); err != nil {
		return c, err
	}
	if c.Latency1, c.Latency32, err = Latency(ctx, s, eval, LatencyRuns); err != nil {
		return c, err
	}
	m, err := onnx.Unmarshal(b)
	if err != nil {
		return c, err
	}
	seen := map[string]bool{}
	for _, n := range m.GetGraph().GetNode() {
		if !seen[n.GetOpType()] {
			seen[n.GetOpType()] = true
			c.Ops = append(c.Ops, n.GetOpType())
		}
	}
	slices.Sort(c.Ops)
	// Last: its collections leave a small heap, which a model that allocates
	// per request then collects often, slowing the runs timed above.
	c.Memory, err = servingMemory(ctx, b, eval)
	return c, err
}

// LatencyRuns is how many runs of each batch the latencies of a search
// take the median of: enough that a pause (a garbage collection, another
// process) moves it little, at a few milliseconds per model.
const LatencyRuns = 31

// Latency is the median time s takes to run the first sample of ds, and
// the first 32 (or all there are), over runs runs each.
func Latency(ctx context.Context, s Session, ds Dataset, runs int) (batch1, batch32 time.Duration, err error) {
	var out [2]time.Duration
	for i, bs := range []int{1, 32} {
		in, _, err := batch(s, ds, 0, min(bs, ds.Len()))
		if err != nil {
			return 0, 0, err
		}
		times := make([]time.Duration, 0, max(runs, 1))
		for range max(runs, 1) {
			start := time.Now()
			if _, err := s.Run(ctx, in); err != nil {
				return 0, 0, err
			}
			times = append(times, time.Since(start))
		}
		slices.Sort(times)
		out[i] = times[len(times)/2]
	}
	return out[0], out[1], nil
}

// ParamString is params as "k=v,k=v", sorted by key.
func ParamString(params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + params[k])
	}
	return b.String()
}

// SelectRecipes returns the recipes of names (comma-separated; "" or
// "all": every one), refusing an unknown name.
func SelectRecipes(names string) ([]Recipe, error) {
	all := Recipes()
	if names == "" || names == "all" {
		return all, nil
	}
	var out []Recipe
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		i := slices.IndexFunc(all, func(r Recipe) bool { return r.Name == n })
		if i < 0 {
			known := make([]string, len(all))
			for k, r := range all {
				known[k] = r.Name
			}
			return nil, fmt.Errorf("compress: unknown recipe %q: want some of %s", n, strings.Join(known, ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}
