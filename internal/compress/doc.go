// Package compress makes smaller variants of an ONNX model: float16
// weights, and int8 quantization in QDQ form (int8 weights per output
// channel, uint8 activations per tensor from a calibration set, min-max or
// percentile). Each is a pure rewrite of the graph that the Go runtime
// (internal/onnx/interp) and ONNX Runtime both run; Accuracy measures a
// variant on a labelled set, so that a caller keeps only those within its
// accuracy budget.
//
// The rewrites know the operators of the MLP and CNN family (Gemm, MatMul,
// Conv and what surrounds them); a model with weights they cannot place is
// refused with an error naming the node.
package compress
