package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
)

// servingSupport is what 'model show' says about the runtimes that can
// serve a version: read from the operators of the ONNX file an agent serves.
type servingSupport struct {
	// File is the ONNX file an agent serves (its only .onnx file, or model.onnx).
	File string `json:"file,omitempty"`
	engine.Support
	// Error says why the runtimes could not be told: no ONNX file, or one
	// that cannot be read.
	Error string `json:"error,omitempty"`
}

// servedONNX picks the file an agent serves among a version's files (artifact.ServedONNX).
func servedONNX(files []artifact.File) (artifact.File, error) { return artifact.ServedONNX(files) }

// checkRuntimes fetches the served ONNX file of a version (verified against
// its digest) and reads from its graph which runtimes can serve it.
func checkRuntimes(ctx context.Context, src content.Fetcher, files []artifact.File) *servingSupport {
	f, err := servedONNX(files)
	if err != nil {
		return &servingSupport{Error: err.Error()}
	}
	s := &servingSupport{File: f.Path}
	if f.Size > interp.MaxModelBytes {
		s.Error = fmt.Sprintf("%s is %d bytes, more than the %d the runtimes load", f.Path, f.Size, interp.MaxModelBytes)
		return s
	}
	desc := ocispec.Descriptor{MediaType: f.MediaType, Digest: f.Digest, Size: f.Size}
	rc, err := src.Fetch(ctx, desc)
	if err != nil {
		s.Error = fmt.Sprintf("fetch %s: %v", f.Path, err)
		return s
	}
	defer rc.Close()
	data, err := content.ReadAll(io.LimitReader(rc, f.Size+1), desc)
	if err != nil {
		s.Error = fmt.Sprintf("fetch %s: %v", f.Path, err)
		return s
	}
	if s.Support, err = engine.CheckSupport(data); err != nil {
		s.Error = fmt.Sprintf("%s: %v", f.Path, err)
	}
	return s
}

// printRuntimes writes the Runtimes line of 'model show'.
func printRuntimes(tw io.Writer, s *servingSupport) {
	switch {
	case s == nil:
		return
	case s.Error != "":
		fmt.Fprintf(tw, "Runtimes:\tunknown: %s\n", s.Error)
		return
	}
	rts := strings.Join(s.Runtimes, ", ")
	if rts == "" {
		rts = "none"
	}
	if s.GoError != "" {
		rts += " (" + s.GoError + ")"
	}
	fmt.Fprintf(tw, "Runtimes:\t%s\n", rts)
	fmt.Fprintf(tw, "Operators:\t%s (opset %d)\n", strings.Join(s.Operators, ", "), s.Opset)
}
