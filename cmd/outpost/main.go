// Command outpost runs the Outpost hub and agents and talks to them: AI/ML
// for disconnected and air-gapped edge clusters.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"outpost.dev/outpost/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
