package dataset

import (
	"bytes"
	"testing"
)

func TestWriteDirRoundTrip(t *testing.T) {
	tr, _, err := FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	s := tr.Pick([]int{5, 0, 3})
	if s.Len() != 3 || !bytes.Equal(s.Image(0), tr.Image(5)) || s.Labels[2] != tr.Labels[3] {
		t.Fatal("Pick did not pick images 5, 0 and 3")
	}
	dir := t.TempDir()
	if err := WriteDir(dir, "train", s); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFashionDir(dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Images, s.Images) || !bytes.Equal(got.Labels, s.Labels) || got.Rows != 28 || got.Cols != 28 {
		t.Fatalf("read back %d images of %dx%d, differing from those written", got.Len(), got.Rows, got.Cols)
	}
}
