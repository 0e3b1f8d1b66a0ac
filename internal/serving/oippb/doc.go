// Package oippb holds the Go types and the gRPC service of the Open
// Inference Protocol's gRPC API (package inference, service
// GRPCInferenceService), generated from grpc_predict_v2.proto by
// `make generate-oip` with protoc, protoc-gen-go and protoc-gen-go-grpc.
// The .pb.go files are generated: do not edit them.
package oippb
