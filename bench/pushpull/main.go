// Command pushpull measures pushing and pulling a large model over loopback
// against one hub, with three clients in the same run: outpost, the oras
// CLI and curl (the raw OCI blob API, a floor for what HTTP can do). It
// prints seconds, throughput and ratios against curl.
//
//	go run ./bench/pushpull -size 1GiB
//
// It needs ./bin/outpost (make build) and .tools/bin/oras (scripts/tools.sh),
// and curl on the PATH.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"outpost.dev/outpost/bench/benchhub"
)

func main() {
	var (
		size    = flag.String("size", "1GiB", "model size: a number with KiB, MiB or GiB")
		outpost = flag.String("outpost", "bin/outpost", "outpost binary")
		oras    = flag.String("oras", ".tools/bin/oras", "oras binary")
		runs    = flag.Int("runs", 1, "repetitions; the best time of each is reported")
	)
	flag.Parse()
	n, err := benchhub.ParseSize(*size)
	if err != nil {
		fail(err)
	}
	if err := run(context.Background(), n, benchhub.AbsPath(*outpost), benchhub.AbsPath(*oras), *runs); err != nil {
		fail(err)
	}
}

func run(ctx context.Context, n int64, outpost, oras string, runs int) error {
	for _, bin := range []string{outpost, oras} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s: %w (run make build and scripts/tools.sh)", bin, err)
		}
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		return fmt.Errorf("curl: %w", err)
	}
	dir, err := os.MkdirTemp("", "outpost-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	hub, err := benchhub.Start(ctx, outpost, dir)
	if err != nil {
		return err
	}
	defer hub.Stop()
	addr, token, ca := hub.Addr, hub.Token, hub.CAFile
	op := func(args ...string) error {
		_, err := hub.Run(ctx, args...)
		return err
	}

	// Each client pushes its own random file, so that none finds its blob already on the hub.
	clients := []string{"curl", "oras", "outpost"}
	models, digests := map[string]string{}, map[string]string{}
	for i, c := range clients {
		models[c] = filepath.Join(dir, "model-"+c)
		fmt.Printf("writing a %s random model file for %s\n", benchhub.FormatSize(n), c)
		if digests[c], err = writeRandom(filepath.Join(models[c], "model.safetensors"), n, byte(i)); err != nil {
			return err
		}
	}
	url := "https://" + addr
	sh := func(model, name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = model
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
		return nil
	}
	shIn := func(model, stdin, name string, args ...string) error {
		f, err := os.Open(stdin)
		if err != nil {
			return err
		}
		defer f.Close()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Stdin = model, f
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
		return nil
	}
	orasAuth := []string{"--ca-file", ca, "-u", "outpost", "-p", token}
	curlAuth := []string{"-sS", "--fail", "--cacert", ca, "-H", "Authorization: Bearer " + token}

	type task struct {
		name string
		fn   func(i int) error
	}
	pushes := []task{
		{"curl", func(i int) error {
			// A monolithic upload of the one blob: the least work an OCI push can do.
			// -T - streams standard input; a file name would be appended to the URL's trailing slash.
			return shIn(models["curl"], filepath.Join(models["curl"], "model.safetensors"), curl, append(curlAuth, "-o", "/dev/null", "-X", "POST",
				"-H", "Content-Type: application/octet-stream", "-H", fmt.Sprintf("Content-Length: %d", n), "-T", "-", fmt.Sprintf("%s/v2/bench/curl/blobs/uploads/?digest=%s", url, digests["curl"]))...)
		}},
		{"oras", func(i int) error {
			return sh(models["oras"], oras, append([]string{"push", addr + "/bench/oras:1.0.0", "model.safetensors"}, orasAuth...)...)
		}},
		{"outpost", func(i int) error {
			return op("model", "push", models["outpost"], "--name", "bench", "--version", "1.0.0")
		}},
	}
	pushTimes := map[string]time.Duration{}
	for _, t := range pushes {
		start := time.Now()
		if err := t.fn(0); err != nil {
			return err
		}
		pushTimes[t.name] = time.Since(start)
	}
	pulls := []task{
		{"curl", func(i int) error {
			return sh(dir, curl, append(curlAuth, "-o", filepath.Join(dir, "curl.out"),
				fmt.Sprintf("%s/v2/models/bench/blobs/%s", url, digests["outpost"]))...)
		}},
		{"oras", func(i int) error {
			return sh(dir, oras, append([]string{"pull", addr + "/models/bench:1.0.0", "-o", filepath.Join(dir, fmt.Sprintf("oras%d", i))}, orasAuth...)...)
		}},
		{"outpost", func(i int) error {
			return op("model", "pull", "bench@1.0.0", filepath.Join(dir, fmt.Sprintf("outpost%d", i)))
		}},
	}
	pullTimes := map[string]time.Duration{}
	for _, t := range pulls {
		for i := 0; i < runs; i++ {
			start := time.Now()
			if err := t.fn(i); err != nil {
				return err
			}
			if d := time.Since(start); pullTimes[t.name] == 0 || d < pullTimes[t.name] {
				pullTimes[t.name] = d
			}
			os.RemoveAll(filepath.Join(dir, "curl.out"))
			os.RemoveAll(filepath.Join(dir, fmt.Sprintf("oras%d", i)))
			os.RemoveAll(filepath.Join(dir, fmt.Sprintf("outpost%d", i)))
		}
	}
	fmt.Printf("\n%s model over loopback HTTPS (push once; pull best of %d)\n", benchhub.FormatSize(n), runs)
	fmt.Printf("%-6s %-8s %9s %11s %9s\n", "op", "client", "seconds", "MiB/s", "vs curl")
	for _, row := range []struct {
		op    string
		times map[string]time.Duration
	}{{"push", pushTimes}, {"pull", pullTimes}} {
		for _, c := range clients {
			d := row.times[c]
			fmt.Printf("%-6s %-8s %9.2f %11.1f %8.2fx\n", row.op, c, d.Seconds(), float64(n)/(1<<20)/d.Seconds(),
				d.Seconds()/row.times["curl"].Seconds())
		}
	}
	fmt.Println("\noutpost push also computes the chunk index (content-defined chunking of every byte); curl pushes one precomputed digest.")
	return nil
}

func writeRandom(path string, n int64, seed byte) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	rng := rand.NewChaCha8([32]byte{seed})
	buf := make([]byte, 1<<20)
	for left := n; left > 0; {
		k := int64(len(buf))
		if left < k {
			k = left
		}
		rng.Read(buf[:k])
		h.Write(buf[:k])
		if _, err := f.Write(buf[:k]); err != nil {
			return "", err
		}
		left -= k
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), f.Close()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pushpull:", err)
	os.Exit(1)
}
