package cli

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/onnx/ort"
	"outpost.dev/outpost/internal/serving"
	"outpost.dev/outpost/internal/serving/endpoint"
)

// DefaultServeAddr is where the agent and 'outpost serve' answer inference
// requests unless --serve says otherwise, and where 'outpost infer' sends
// them.
const DefaultServeAddr = "127.0.0.1:8080"

// servingFlags are the inference server's flags, which the agent and
// 'outpost serve' share.
type servingFlags struct {
	addr, grpc, maxRequest, maxInflight, ortLib string
}

// register adds the flags to fs.
func (sf *servingFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&sf.addr, "serve", DefaultServeAddr, `address of the inference endpoint (Open Inference Protocol v2 REST); a free port when the default is taken; "" serves nothing`)
	fs.StringVar(&sf.grpc, "grpc", "", `address of the gRPC inference endpoint (Open Inference Protocol v2 gRPC), such as 127.0.0.1:8081; "" (the default) serves none`)
	fs.StringVar(&sf.maxRequest, "max-request-bytes", "64MiB", "largest inference request (REST body or gRPC message) accepted")
	fs.StringVar(&sf.maxInflight, "max-inflight-bytes", "", "bytes all inference requests may hold at once (bodies, decoded tensors, outputs); more are refused with 429 / RESOURCE_EXHAUSTED (default 4x --max-request-bytes)")
	fs.StringVar(&sf.ortLib, "onnxruntime-lib", "", "ONNX Runtime shared library (libonnxruntime.so) for models served with onnxruntime (env "+ort.EnvLib+")")
}

// config checks the flags of cmd and returns where and how to serve, with
// log as the server's logger. --serve falls back to a free port when it is
// the default and another process holds it.
func (sf *servingFlags) config(cmd *cobra.Command, log *slog.Logger) (endpoint.Config, error) {
	limits, err := servingLimits(sf.maxRequest, sf.maxInflight)
	if err != nil {
		return endpoint.Config{}, err
	}
	lib := sf.ortLib
	if lib == "" {
		lib = os.Getenv(ort.EnvLib)
	}
	return endpoint.Config{
		REST: sf.addr, FreePortIfBusy: !cmd.Flags().Changed("serve"), GRPC: sf.grpc, ONNXRuntimeLib: lib,
		Serving: serving.Config{Version: Version(), MaxRequestBytes: limits.MaxRequestBytes,
			MaxInflightBytes: limits.MaxInflightBytes, Logger: log},
	}, nil
}

// servingLimits parses --max-request-bytes and --max-inflight-bytes into
// the limits of a serving.Config. The budget in flight must hold a request
// of the largest size; "" leaves it to serving's default.
func servingLimits(maxRequest, maxInflight string) (serving.Config, error) {
	var c serving.Config
	var err error
	if c.MaxRequestBytes, err = agent.ParseBandwidth(maxRequest); err != nil || c.MaxRequestBytes <= 0 {
		return c, fmt.Errorf("--max-request-bytes %q: want a size such as 64MiB", maxRequest)
	}
	if maxInflight == "" {
		return c, nil
	}
	if c.MaxInflightBytes, err = agent.ParseBandwidth(maxInflight); err != nil || c.MaxInflightBytes <= 0 {
		return c, fmt.Errorf("--max-inflight-bytes %q: want a size such as 256MiB", maxInflight)
	}
	if c.MaxInflightBytes < c.MaxRequestBytes {
		return c, fmt.Errorf("--max-inflight-bytes %s is less than --max-request-bytes %s: a request of the largest size could never be served",
			maxInflight, maxRequest)
	}
	return c, nil
}
