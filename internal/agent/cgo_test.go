//go:build cgo

package agent

// noCgo reports whether err says the binary cannot load ONNX Runtime for want of cgo.
func noCgo(error) bool { return false }
