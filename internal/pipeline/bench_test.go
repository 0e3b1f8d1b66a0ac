package pipeline

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"outpost.dev/outpost/api/v1alpha1"
)

// chain is a pipeline of n steps, each depending on the one before.
func chain(n int, cmd string) string {
	var b strings.Builder
	b.WriteString("steps:\n")
	for i := range n {
		fmt.Fprintf(&b, "- {name: s%d, type: exec, exec: {command: [%s]}", i, cmd)
		if i > 0 {
			fmt.Fprintf(&b, ", dependsOn: [s%d]", i-1)
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// BenchmarkEmptyStep measures the engine's own cost per step: a chain of
// steps that do nothing (a test-only step type in place of exec), with
// the cache off, each step recorded in SQLite (fsynced) and logged. It
// reports ns/step.
func BenchmarkEmptyStep(b *testing.B) {
	noop := stepType{run: func(ctx context.Context, env *stepEnv) (map[string]string, error) { return nil, nil }}
	benchChain(b, "'true'", func(o *Options) { o.types = map[v1alpha1.StepType]stepType{v1alpha1.StepExec: noop} })
}

// BenchmarkExecTrueStep is BenchmarkEmptyStep with each step a real
// command (true), run under rlimits through the helper.
func BenchmarkExecTrueStep(b *testing.B) {
	benchChain(b, "'true'")
}

func benchChain(b *testing.B, cmd string, mutate ...func(*Options)) {
	const steps = 20
	te := startEngine(b, b.TempDir(), mutate...)
	spec := specOf(b, chain(steps, cmd))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("bench-%d", i)
		if _, err := te.Start(b.Context(), name, "bench", 1, spec, "", RunOptions{NoCache: true}); err != nil {
			b.Fatal(err)
		}
		if r := te.wait(b, name); r.Status.Phase != v1alpha1.RunSucceeded {
			b.Fatalf("run %s: %s", r.Status.Phase, r.Status.Message)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*steps), "ns/step")
}
