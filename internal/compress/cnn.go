package compress

import (
	"context"
	"fmt"

	"outpost.dev/outpost/internal/train"
)

// cnnCell is how many features of the CNN's fully connected layer each
// channel of its second convolution feeds (its 7x7 pooled map).
const cnnCell = 7 * 7

// PruneChannels returns a copy of c without its weakest convolution
// channels: each convolution keeps the share keep of its output channels
// (at least one), ranked as PruneUnits ranks units, by the norm of the
// weights into the channel times the norm of those out of it (the second
// convolution's kernels reading a first-convolution channel, the fully
// connected weights of a second-convolution channel's 49 features), so
// that the dense model really shrinks; then it fine-tunes the copy.
func PruneChannels(ctx context.Context, c *train.CNN, keep float64, ft FineTune) (*train.CNN, error) {
	if err := checkKeep(keep, "channels"); err != nil {
		return nil, err
	}
	p := pruneChannels(c, keep)
	if err := fineTune(ctx, p, ft); err != nil {
		return nil, err
	}
	return p, nil
}

// pruneChannels is PruneChannels without the fine-tuning. Removing a
// channel of the first convolution removes the second's input channel;
// removing one of the second removes its 49 rows of the fully connected
// weights.
func pruneChannels(c *train.CNN, keep float64) *train.CNN {
	c1, c2 := c.Widths()
	k1 := len(c.Conv1W) / c1 // weights per first-convolution channel (9)
	kk := len(c.Conv2W) / (c2 * c1)
	classes := len(c.FCB)
	kept1 := strongest(c1, keep, func(o int) (into, outOf float64) {
		for _, w := range c.Conv1W[o*k1 : (o+1)*k1] {
			into += sq(w)
		}
		into += sq(c.Conv1B[o])
		for q := range c2 {
			for _, w := range c.Conv2W[(q*c1+o)*kk : (q*c1+o+1)*kk] {
				outOf += sq(w)
			}
		}
		return into, outOf
	})
	kept2 := strongest(c2, keep, func(o int) (into, outOf float64) {
		for _, i := range kept1 {
			for _, w := range c.Conv2W[(o*c1+i)*kk : (o*c1+i+1)*kk] {
				into += sq(w)
			}
		}
		into += sq(c.Conv2B[o])
		for _, w := range c.FCW[o*cnnCell*classes : (o+1)*cnnCell*classes] {
			outOf += sq(w)
		}
		return into, outOf
	})
	p := &train.CNN{FCB: append([]float32(nil), c.FCB...)}
	for _, o := range kept1 {
		p.Conv1W = append(p.Conv1W, c.Conv1W[o*k1:(o+1)*k1]...)
		p.Conv1B = append(p.Conv1B, c.Conv1B[o])
	}
	for _, o := range kept2 {
		for _, i := range kept1 {
			p.Conv2W = append(p.Conv2W, c.Conv2W[(o*c1+i)*kk:(o*c1+i+1)*kk]...)
		}
		p.Conv2B = append(p.Conv2B, c.Conv2B[o])
		p.FCW = append(p.FCW, c.FCW[o*cnnCell*classes:(o+1)*cnnCell*classes]...)
	}
	return p
}

// DistillCNN trains a student CNN of conv1 and conv2 channels on ft.Data
// from teacher's outputs (probabilities over train.CNNClasses classes), as
// Distill trains a student MLP: each sample's soft target is the teacher's
// distribution softened to temperature, mixed with the label at weight
// 1 − soft.
func DistillCNN(ctx context.Context, teacher Session, conv1, conv2 int, temperature, soft float64, ft FineTune) (*train.CNN, error) {
	if conv1 < 1 || conv2 < 1 {
		return nil, fmt.Errorf("compress: student CNN of widths %d and %d: want each at least 1", conv1, conv2)
	}
	var s *train.CNN
	err := distil(ctx, teacher, temperature, soft, ft, func(classes int) (learner, error) {
		if classes != train.CNNClasses {
			return nil, fmt.Errorf("compress: the teacher gives %d scores, a student CNN %d", classes, train.CNNClasses)
		}
		s = train.NewCNNWidths(conv1, conv2, max(ft.Seed, 1))
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}
