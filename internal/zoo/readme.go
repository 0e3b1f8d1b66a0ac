package zoo

import (
	"bytes"
	"fmt"
)

// Readme renders README.md for the models of a manifest.
func Readme(models []Model) []byte {
	var b bytes.Buffer
	b.WriteString(`# Model zoo

Small models trained here on Fashion-MNIST (the subset embedded in
internal/dataset: the first 6000 training and 1000 test images) by
internal/train, exported as ONNX (IR 8, opset 13), for tests, benchmarks and
the demo. Package zoo embeds them; ` + "`go run ./internal/zoo/gen`" + ` retrains them and
rewrites the files, zoo.json and this README (deterministic on one CPU
architecture; TestGeneratorReproducesZoo checks it).

Every model takes ` + "`input`" + `, float32 [N, ...] pixels scaled to [0, 1], and
returns ` + "`probabilities`" + `, float32 [N, 10]. Test accuracy is measured by running
the ONNX file with the Go runtime (internal/onnx/interp) on the 1000 test
images; the tests of this package check it again, check every file with
` + "`onnx.checker.check_model`" + `, and compare the Go runtime's outputs with ONNX
Runtime's on 256 test images.

| model | file | input | parameters | bytes | test accuracy | operators |
|---|---|---|---|---|---|---|
`)
	for _, m := range models {
		fmt.Fprintf(&b, "| %s | %s | [N,%s] | %d | %d | %.1f%% | %s |\n",
			m.Name, m.File, dims(m.Input), m.Params, m.Bytes, 100*m.TestAccuracy, m.Description)
	}
	b.WriteString("\nRecipes:\n\n")
	for _, m := range models {
		fmt.Fprintf(&b, "- %s: %s\n", m.Name, m.Recipe)
	}
	b.WriteString("\nSHA-256:\n\n")
	for _, m := range models {
		fmt.Fprintf(&b, "- %s `%s`\n", m.File, m.SHA256)
	}
	return b.Bytes()
}

func dims(d []int) string {
	s := ""
	for i, x := range d {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprint(x)
	}
	return s
}
