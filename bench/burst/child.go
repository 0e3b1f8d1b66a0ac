package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/serving"
	"outpost.dev/outpost/internal/zoo"
)

// serveChild serves the zoo's MLP as deployment "mlp" on loopback, REST
// and gRPC, prints "ready REST_ADDR GRPC_ADDR" once it answers, and serves
// until its standard input closes.
func serveChild(maxRequest, maxInflight int64) error {
	dir, err := os.MkdirTemp("", "outpost-bench-burst-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	m, data, err := zoo.Get("mlp")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, m.File)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	srv := serving.New(serving.Config{Version: "bench", MaxRequestBytes: maxRequest, MaxInflightBytes: maxInflight,
		Logger: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	done := make(chan struct{}, 2)
	go func() { srv.Serve(ctx, ln); done <- struct{}{} }()
	go func() { srv.ServeGRPC(ctx, gln); done <- struct{}{} }()
	srv.Sync(ctx, []serving.Model{{Deployment: "mlp", Model: "mlp", Version: "1", Digest: "sha256:mlp",
		Files: map[string]string{"model.onnx": path}, Serving: v1alpha1.Serving{Runtime: v1alpha1.RuntimeGo}}})
	for deadline := time.Now().Add(30 * time.Second); !srv.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("model not ready after 30s: %+v", srv.Status())
		}
	}
	fmt.Printf("ready %s %s\n", ln.Addr(), gln.Addr())
	waitClosed(os.Stdin)
	cancel()
	<-done
	<-done
	return nil
}
