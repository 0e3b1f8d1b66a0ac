package artifact

import (
	"fmt"
	"path"
	"strings"
)

// ServedONNX picks the file an agent serves among a version's files, as
// serving does: the only .onnx file, or model.onnx among several.
func ServedONNX(files []File) (File, error) {
	var onnx []File
	for _, f := range files {
		if strings.EqualFold(path.Ext(f.Path), ".onnx") {
			onnx = append(onnx, f)
		}
	}
	switch len(onnx) {
	case 0:
		return File{}, fmt.Errorf("no ONNX file: the agent syncs the version but does not serve it")
	case 1:
		return onnx[0], nil
	}
	for _, f := range onnx {
		if path.Base(f.Path) == "model.onnx" {
			return f, nil
		}
	}
	return File{}, fmt.Errorf("several .onnx files and none is model.onnx: the agent does not serve it")
}
