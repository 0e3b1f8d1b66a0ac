package train

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"testing"
)

// The soft term's gradient with respect to the logits, α·T·(p_T − q), is
// the derivative of α·T²·CE(q, softmax(z/T)): checked by central
// differences of the loss distil.softmax computes.
func TestDistilGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, temp := range []float64{1, 2, 4} {
		const alpha, c = 0.7, 6
		z := make([]float32, c)
		q := make([]float32, c)
		var sum float32
		for j := range z {
			z[j] = float32(rng.NormFloat64() * 2)
			q[j] = rng.Float32()
			sum += q[j]
		}
		for j := range q {
			q[j] /= sum
		}
		d := &distil{rows: [][]float32{q}, weight: alpha, temp: temp, pt: make([]float32, c)}
		loss := func(z []float32) float64 {
			ce, err := d.softmax(z, 0)
			if err != nil {
				t.Fatal(err)
			}
			return alpha * temp * temp * ce
		}
		if _, err := d.softmax(z, 0); err != nil {
			t.Fatal(err)
		}
		grad := make([]float64, c)
		for j := range grad {
			grad[j] = alpha * temp * float64(d.pt[j]-q[j])
		}
		const h = 1e-2
		for j := range z {
			zp, zm := append([]float32(nil), z...), append([]float32(nil), z...)
			zp[j] += h
			zm[j] -= h
			num := (loss(zp) - loss(zm)) / (2 * h)
			if math.Abs(num-grad[j]) > 1e-3*max(1, math.Abs(num)) {
				t.Errorf("T=%v: d loss / d z[%d] = %.6f by differences, %.6f by the formula", temp, j, num, grad[j])
			}
		}
	}
}

// With SoftWeight 0 the soft targets change nothing: the model trains bit
// for bit as without them. With weight 1 at T=1 on one-hot targets of the
// labels, it trains as on the labels (up to rounding).
func TestDistilMixing(t *testing.T) {
	tr, _ := subset(t)
	part := tr.Slice(0, 300)
	oneHot := func(i int) []float32 {
		v := make([]float32, 10)
		v[int(part.Labels[i])] = 1
		return v
	}
	run := func(opts TrainOptions) *MLP {
		m := NewMLP([]int{784, 16, 10}, 3)
		opts.Epochs, opts.BatchSize = 2, 30
		if _, err := m.Train(context.Background(), part, opts); err != nil {
			t.Fatal(err)
		}
		return m
	}
	bytesOf := func(m *MLP) []byte {
		b, err := m.MarshalONNX("m")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	plain := run(TrainOptions{})
	if !bytes.Equal(bytesOf(plain), bytesOf(run(TrainOptions{Soft: oneHot, SoftWeight: 0}))) {
		t.Error("soft targets of weight 0 changed training")
	}
	soft := run(TrainOptions{Soft: oneHot, SoftWeight: 1, Temperature: 1})
	for i, l := range plain.Layers {
		for k, w := range l.W {
			if d := math.Abs(float64(w - soft.Layers[i].W[k])); d > 1e-4 {
				t.Fatalf("layer %d weight %d: %v on labels, %v on their one-hot soft targets", i, k, w, soft.Layers[i].W[k])
			}
		}
	}
	uniform := func(int) []float32 {
		v := make([]float32, 10)
		for j := range v {
			v[j] = 0.1
		}
		return v
	}
	if bytes.Equal(bytesOf(plain), bytesOf(run(TrainOptions{Soft: uniform, SoftWeight: 0.5, Temperature: 2}))) {
		t.Error("soft targets of weight 0.5 changed nothing")
	}
	for _, bad := range []TrainOptions{
		{Soft: uniform, SoftWeight: 1.5},
		{Soft: uniform, SoftWeight: 0.5, Temperature: -1},
		{Soft: func(int) []float32 { return make([]float32, 3) }, SoftWeight: 0.5},
	} {
		if _, err := NewMLP([]int{784, 4, 10}, 1).Train(context.Background(), part, bad); err == nil {
			t.Errorf("options %+v accepted", bad)
		}
	}
	if _, err := NewCNN(1).Train(context.Background(), part, TrainOptions{Masks: [][]bool{nil}}); err == nil {
		t.Error("the CNN accepted masks it does not use")
	}
}

// The CNN distils as the MLP does: soft targets of weight 0 change nothing;
// targets that disagree with the labels (each the next class) pull the
// student toward them, the more the more they weigh; bad targets are
// refused.
func TestCNNDistil(t *testing.T) {
	tr, _ := subset(t)
	part := tr.Slice(0, 200)
	next := func(i int) []float32 {
		v := make([]float32, CNNClasses)
		v[(int(part.Labels[i])+1)%CNNClasses] = 1
		return v
	}
	x := make([]float32, part.Len()*cnnInDim)
	for i := range part.Len() {
		part.Sample(i, x[i*cnnInDim:(i+1)*cnnInDim])
	}
	// agreement is the share of samples whose most probable class is
	// the soft target's.
	agreement := func(c *CNN) float64 {
		p := c.Predict(x)
		n := 0
		for i := range part.Len() {
			if argmax(p[i*CNNClasses:(i+1)*CNNClasses]) == argmax(next(i)) {
				n++
			}
		}
		return float64(n) / float64(part.Len())
	}
	run := func(opts TrainOptions) (*CNN, []byte) {
		c := NewCNNWidths(2, 3, 4)
		opts.Epochs, opts.BatchSize, opts.LR = 1, 20, 1e-2
		if _, err := c.Train(context.Background(), part, opts); err != nil {
			t.Fatal(err)
		}
		b, err := c.MarshalONNX("s")
		if err != nil {
			t.Fatal(err)
		}
		return c, b
	}
	plain, plainBytes := run(TrainOptions{})
	if _, b := run(TrainOptions{Soft: next, SoftWeight: 0}); !bytes.Equal(b, plainBytes) {
		t.Error("soft targets of weight 0 changed training")
	}
	base := agreement(plain)
	for _, w := range []float64{0.5, 1} {
		c, _ := run(TrainOptions{Soft: next, SoftWeight: w, Temperature: 2})
		if got := agreement(c); got < base+0.1 {
			t.Errorf("soft weight %v: the student agrees with its targets on %.2f of the samples, %.2f when trained on the labels", w, got, base)
		}
	}
	for _, bad := range []TrainOptions{
		{Soft: next, SoftWeight: 1.5},
		{Soft: func(int) []float32 { return make([]float32, 3) }, SoftWeight: 0.5},
	} {
		if _, err := NewCNNWidths(1, 1, 1).Train(context.Background(), part, bad); err == nil {
			t.Errorf("options %+v accepted", bad)
		}
	}
}

// Masked weights stay zero through training, the others train.
func TestMasks(t *testing.T) {
	tr, _ := subset(t)
	part := tr.Slice(0, 200)
	m := NewMLP([]int{784, 8, 10}, 5)
	masks := [][]bool{make([]bool, 784*8), nil}
	for k := range masks[0] {
		masks[0][k] = k%3 == 0
	}
	before := m.Clone()
	if _, err := m.Train(context.Background(), part, TrainOptions{Epochs: 1, BatchSize: 20, Masks: masks}); err != nil {
		t.Fatal(err)
	}
	moved := 0
	for k, w := range m.Layers[0].W {
		if !masks[0][k] && w != 0 {
			t.Fatalf("masked weight %d is %v", k, w)
		}
		if masks[0][k] && w != before.Layers[0].W[k] {
			moved++
		}
	}
	if moved == 0 || bytes.Equal(f32bytes(m.Layers[1].W), f32bytes(before.Layers[1].W)) {
		t.Error("the unmasked weights did not train")
	}
	for _, bad := range [][][]bool{{nil}, {make([]bool, 3), nil}} {
		if _, err := NewMLP([]int{784, 8, 10}, 1).Train(context.Background(), part, TrainOptions{Masks: bad}); err == nil {
			t.Errorf("masks of lengths %d accepted", len(bad))
		}
	}
}

func f32bytes(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		u := math.Float32bits(x)
		b = append(b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
	}
	return b
}
