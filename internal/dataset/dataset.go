package dataset

import (
	"bytes"
	"embed"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Set is a labelled image set: Len() images of Rows x Cols unsigned bytes with a
// class label in [0, Classes) each. It satisfies train.Dataset: Sample scales
// pixels to [0, 1], the input convention of the models made by internal/train.
type Set struct {
	Rows, Cols int
	Classes    int
	Images     []byte  // Len()*Rows*Cols bytes, image after image, row-major
	Labels     []uint8 // one per image
}

// Len is the number of images.
func (s *Set) Len() int { return len(s.Labels) }

// Dim is the number of features of one sample (Rows*Cols).
func (s *Set) Dim() int { return s.Rows * s.Cols }

// Image returns the pixels of image i.
func (s *Set) Image(i int) []byte {
	d := s.Dim()
	return s.Images[i*d : (i+1)*d]
}

// Sample writes image i, scaled to [0, 1], into dst (len Dim()) and returns its label.
func (s *Set) Sample(i int, dst []float32) int {
	for j, p := range s.Image(i) {
		dst[j] = float32(p) / 255
	}
	return int(s.Labels[i])
}

// Slice returns images [from, to) as a new Set sharing memory with s.
func (s *Set) Slice(from, to int) *Set {
	d := s.Dim()
	return &Set{Rows: s.Rows, Cols: s.Cols, Classes: s.Classes,
		Images: s.Images[from*d : to*d], Labels: s.Labels[from:to]}
}

// New checks that an images file (3 dimensions: count, rows, cols) and a labels
// file (1 dimension: count) belong together, with every label below classes.
func New(images, labels *IDX, classes int) (*Set, error) {
	if len(images.Dims) != 3 {
		return nil, formatErr("images: %d dimensions, want 3 (count, rows, cols)", len(images.Dims))
	}
	if len(labels.Dims) != 1 {
		return nil, formatErr("labels: %d dimensions, want 1", len(labels.Dims))
	}
	if images.Dims[0] != labels.Dims[0] {
		return nil, formatErr("%d images but %d labels", images.Dims[0], labels.Dims[0])
	}
	if classes < 1 || classes > 256 {
		return nil, fmt.Errorf("dataset: %d classes: want 1 to 256", classes)
	}
	for i, l := range labels.Data {
		if int(l) >= classes {
			return nil, formatErr("label %d of record %d is not below %d classes", l, i, classes)
		}
	}
	return &Set{Rows: images.Dims[1], Cols: images.Dims[2], Classes: classes,
		Images: images.Data, Labels: labels.Data}, nil
}

// Read decodes an images and a labels IDX stream (gzipped or not) into a Set.
func Read(images, labels io.Reader, classes int) (*Set, error) {
	im, err := ReadIDX(images, 0)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	lb, err := ReadIDX(labels, 0)
	if err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	return New(im, lb, classes)
}

// FashionClasses names the ten Fashion-MNIST labels, in label order.
var FashionClasses = []string{
	"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
	"Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
}

// DebianFashionDir is where the Debian package dataset-fashion-mnist installs the
// full data set.
const DebianFashionDir = "/usr/share/datasets/fashion-mnist"

// ReadFashionDir reads split "train" or "t10k" (the test set) of Fashion-MNIST
// from dir, in the file names of the original distribution (and of Debian's
// dataset-fashion-mnist): train-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, ...
// Files without the .gz suffix are accepted too.
func ReadFashionDir(dir, split string) (*Set, error) {
	open := func(kind string) (*os.File, error) {
		base := filepath.Join(dir, split+"-"+kind)
		f, err := os.Open(base + ".gz")
		if os.IsNotExist(err) {
			f, err = os.Open(base)
		}
		return f, err
	}
	im, err := open("images-idx3-ubyte")
	if err != nil {
		return nil, err
	}
	defer im.Close()
	lb, err := open("labels-idx1-ubyte")
	if err != nil {
		return nil, err
	}
	defer lb.Close()
	s, err := Read(im, lb, len(FashionClasses))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", dir, split, err)
	}
	return s, nil
}

//go:embed testdata/*.gz
var subset embed.FS

// Sizes of the embedded Fashion-MNIST subset.
const (
	SubsetTrainLen = 6000
	SubsetTestLen  = 1000
)

// FashionSubset returns the embedded Fashion-MNIST subset: the first 6000 training
// and the first 1000 test images (see testdata/README.md). Each call decodes anew,
// so callers own the returned sets.
func FashionSubset() (train, test *Set, err error) {
	load := func(name string) (*Set, error) {
		im, err := subset.ReadFile("testdata/fashion-" + name + "-images-idx3-ubyte.gz")
		if err != nil {
			return nil, err
		}
		lb, err := subset.ReadFile("testdata/fashion-" + name + "-labels-idx1-ubyte.gz")
		if err != nil {
			return nil, err
		}
		return Read(bytes.NewReader(im), bytes.NewReader(lb), len(FashionClasses))
	}
	if train, err = load("train"); err != nil {
		return nil, nil, fmt.Errorf("embedded Fashion-MNIST train subset: %w", err)
	}
	if test, err = load("test"); err != nil {
		return nil, nil, fmt.Errorf("embedded Fashion-MNIST test subset: %w", err)
	}
	return train, test, nil
}

// WriteDir writes s as split ("train" or "t10k") of an IDX folder in the file names
// ReadFashionDir reads, uncompressed: SPLIT-images-idx3-ubyte and SPLIT-labels-idx1-ubyte.
func WriteDir(dir, split string, s *Set) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	header := func(dims ...int) []byte {
		b := []byte{0, 0, 0x08, byte(len(dims))}
		for _, d := range dims {
			b = binary.BigEndian.AppendUint32(b, uint32(d))
		}
		return b
	}
	files := []struct {
		name string
		data []byte
	}{
		{split + "-images-idx3-ubyte", append(header(s.Len(), s.Rows, s.Cols), s.Images...)},
		{split + "-labels-idx1-ubyte", append(header(s.Len()), s.Labels...)},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Pick returns the images of s at idx, in that order, as a new Set.
func (s *Set) Pick(idx []int) *Set {
	out := &Set{Rows: s.Rows, Cols: s.Cols, Classes: s.Classes, Labels: make([]uint8, 0, len(idx)),
		Images: make([]byte, 0, len(idx)*s.Dim())}
	for _, i := range idx {
		out.Images = append(out.Images, s.Image(i)...)
		out.Labels = append(out.Labels, s.Labels[i])
	}
	return out
}
