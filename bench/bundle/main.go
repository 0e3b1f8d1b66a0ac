// Command bundle measures what an air-gapped cluster's update costs on
// removable media: the bytes of an Outpost bundle from v1 to v2 against a
// full OCI copy of v2 (what image-shipping air-gap tools carry) and against
// rsync's offline delta (rsync --write-batch), for a fine-tune of the last
// layers and for a full fine-tune; and the time to import a bundle against
// the time to copy the same bytes on the same disk.
//
//	make build && ./scripts/bench-deps.sh && go run ./bench/bundle
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"outpost.dev/outpost/bench/benchhub"
)

func main() {
	var (
		size    = flag.String("size", "64MiB", "size of the weights file: a number with KiB, MiB or GiB")
		outpost = flag.String("outpost", "bin/outpost", "outpost binary")
		oras    = flag.String("oras", ".tools/bin/oras", "oras binary")
		changes = flag.String("change", "10,100", "percent of the weights v2 changes, one scenario each (10: the last layers; 100: a full fine-tune)")
		runs    = flag.Int("runs", 3, "imports and copies timed per bundle (the median counts)")
		parts   = flag.String("max-part-size", "16MiB", "the full bundle is also written as tar parts of this size, and its import timed")
		keep    = flag.Bool("keep", false, "keep the scratch folder (hub, bundles, the cluster's data) and print its path")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := benchhub.ParseSize(*size)
	if err != nil {
		fail(err)
	}
	b := &bench{size: n, outpost: benchhub.AbsPath(*outpost), oras: benchhub.AbsPath(*oras), runs: max(*runs, 1), parts: *parts, keep: *keep}
	for _, c := range strings.Split(*changes, ",") {
		var pct int
		if _, err := fmt.Sscan(c, &pct); err != nil || pct < 1 || pct > 100 {
			fail(fmt.Errorf("-change %q: want percents from 1 to 100", c))
		}
		b.changes = append(b.changes, pct)
	}
	if err := b.run(ctx); err != nil {
		fail(err)
	}
}

type bench struct {
	size          int64
	outpost, oras string
	rsync         string
	changes       []int
	runs          int
	parts         string
	keep          bool

	dir  string
	hub  *benchhub.Hub
	edge string // the air-gapped cluster's data directory
}

// result is one scenario's measurement.
type result struct {
	change                        int
	v2                            int64 // v2's files
	full, bundle, oci, rsyncBatch int64
	deltas                        bool
	importFull, copyFull          time.Duration
	importParts, copyParts        time.Duration
	importV2, copyV2              time.Duration
}

func (b *bench) run(ctx context.Context) error {
	for _, bin := range []string{b.outpost, b.oras} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s: %w (run make build and scripts/bench-deps.sh)", bin, err)
		}
	}
	var err error
	if b.rsync, err = exec.LookPath("rsync"); err != nil {
		return fmt.Errorf("rsync: %w (run scripts/bench-deps.sh)", err)
	}
	if b.dir, err = os.MkdirTemp("", "outpost-bench-bundle-"); err != nil {
		return err
	}
	if b.keep {
		fmt.Println("scratch folder (kept):", b.dir)
	} else {
		defer os.RemoveAll(b.dir)
	}
	if b.hub, err = benchhub.Start(ctx, b.outpost, b.dir); err != nil {
		return err
	}
	defer b.hub.Stop()
	if err := b.joinOffline(ctx); err != nil {
		return err
	}
	var rs []result
	for _, c := range b.changes {
		fmt.Printf("scenario: v2 changes %d%% of %s of weights\n", c, benchhub.FormatSize(b.size))
		r, err := b.scenario(ctx, c)
		if err != nil {
			return fmt.Errorf("change %d%%: %w", c, err)
		}
		rs = append(rs, r)
	}
	b.print(rs)
	return nil
}

// joinOffline joins the cluster sub-1 once over the network, as at the
// depot, and stops its agent: from then on only bundles reach it.
func (b *bench) joinOffline(ctx context.Context) error {
	tok, err := b.hub.Run(ctx, "cluster", "token", "create", "--ttl", "1h")
	if err != nil {
		return err
	}
	b.edge = filepath.Join(b.dir, "edge")
	ready := filepath.Join(b.dir, "edge.ready")
	cmd := exec.CommandContext(ctx, b.outpost, "agent", "--hub", "https://"+b.hub.Addr, "--ca-file", b.hub.CAFile,
		"--join-token", strings.TrimSpace(tok), "--data", b.edge, "--name", "sub-1", "--labels", "bench=bundle",
		"--ready-file", ready)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(ready); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the agent did not join:\n%s", out.String())
}

func (b *bench) scenario(ctx context.Context, change int) (result, error) {
	r := result{change: change}
	name := fmt.Sprintf("b%d", change)
	dir := filepath.Join(b.dir, name)
	v1, v2 := filepath.Join(dir, "v1"), filepath.Join(dir, "v2")
	if err := benchhub.WriteModel(v1, v2, b.size, change, uint64(change)); err != nil {
		return r, err
	}
	r.v2 = dirSize(v2)
	api, err := b.hub.Client()
	if err != nil {
		return r, err
	}
	if _, err := b.hub.Run(ctx, "model", "push", v1, "--name", name, "--version", "1.0.0"); err != nil {
		return r, err
	}
	if err := benchhub.Deploy(ctx, api, name, name, "1.0.0", map[string]string{"bench": "bundle"}); err != nil {
		return r, err
	}
	// v1 reaches the cluster by a full bundle; its status comes back, so
	// the hub knows what the cluster holds.
	full := filepath.Join(dir, "bundle-v1")
	if _, err := b.hub.Run(ctx, "bundle", "create", "--cluster", "sub-1", "--out", full); err != nil {
		return r, err
	}
	r.full = dirSize(full)
	parts := filepath.Join(dir, "bundle-v1-parts")
	if _, err := b.hub.Run(ctx, "bundle", "create", "--cluster", "sub-1", "--out", parts, "--max-part-size", b.parts); err != nil {
		return r, err
	}
	if r.importParts, r.copyParts, err = b.timeImport(ctx, parts, false); err != nil {
		return r, err
	}
	if r.importFull, r.copyFull, err = b.timeImport(ctx, full, true); err != nil {
		return r, err
	}
	if err := b.statusBack(ctx, filepath.Join(dir, "status-1.json")); err != nil {
		return r, err
	}

	if _, err := b.hub.Run(ctx, "model", "push", v2, "--name", name, "--version", "1.1.0", "--parent", name+"@1.0.0"); err != nil {
		return r, err
	}
	if err := benchhub.Deploy(ctx, api, name, name, "1.1.0", map[string]string{"bench": "bundle"}); err != nil {
		return r, err
	}
	delta := filepath.Join(dir, "bundle-v2")
	out, err := b.hub.Run(ctx, "bundle", "create", "--cluster", "sub-1", "--out", delta)
	if err != nil {
		return r, err
	}
	fmt.Print("  ", out)
	r.deltas = strings.Contains(out, "as weight deltas: ") && !strings.Contains(out, "as weight deltas: 0")
	r.bundle = dirSize(delta)
	if r.importV2, r.copyV2, err = b.timeImport(ctx, delta, true); err != nil {
		return r, err
	}
	if err := b.statusBack(ctx, filepath.Join(dir, "status-2.json")); err != nil {
		return r, err
	}

	// What an image-shipping tool carries: v2 whole, as an OCI layout.
	oci := filepath.Join(dir, "oci-v2")
	cmd := exec.CommandContext(ctx, b.oras, "copy", "--to-oci-layout", b.hub.Addr+"/models/"+name+":1.1.0", oci+":1.1.0",
		"--from-ca-file", b.hub.CAFile, "--from-username", "outpost", "--from-password", b.hub.Token)
	if o, err := cmd.CombinedOutput(); err != nil {
		return r, fmt.Errorf("oras copy: %w\n%s", err, o)
	}
	r.oci = dirSize(oci)

	// rsync's offline delta: the batch that turns a copy of v1 into v2.
	dst := filepath.Join(dir, "rsync-dst")
	if err := copyTree(v1, dst, false); err != nil {
		return r, err
	}
	batch := filepath.Join(dir, "rsync.batch")
	cmd = exec.CommandContext(ctx, b.rsync, "-a", "--write-batch="+batch, v2+"/", dst+"/")
	if o, err := cmd.CombinedOutput(); err != nil {
		return r, fmt.Errorf("rsync --write-batch: %w\n%s", err, o)
	}
	st, err := os.Stat(batch)
	if err != nil {
		return r, err
	}
	r.rsyncBatch = st.Size()
	return r, nil
}

// timeImport imports bundle into a copy of the cluster's data directory
// b.runs times, and copies the bundle's files (each fsynced, as the import
// does) as often, and returns the medians; with keep, the cluster's own
// directory then imports it for real.
func (b *bench) timeImport(ctx context.Context, bundle string, keep bool) (imp, cp time.Duration, err error) {
	var imps, cps []time.Duration
	if b.keep { // the cluster's data before the import, to import again by hand
		if err := copyTree(b.edge, bundle+".before", false); err != nil {
			return 0, 0, err
		}
	}
	for i := range b.runs {
		scratch := filepath.Join(b.dir, fmt.Sprintf("scratch-%d", i))
		if err := copyTree(b.edge, scratch, false); err != nil {
			return 0, 0, err
		}
		start := time.Now()
		if err := b.edgeRun(ctx, "bundle", "import", bundle, "--data", scratch); err != nil {
			return 0, 0, err
		}
		imps = append(imps, time.Since(start))
		os.RemoveAll(scratch)
		to := filepath.Join(b.dir, fmt.Sprintf("copy-%d", i))
		start = time.Now()
		if err := copyTree(bundle, to, true); err != nil {
			return 0, 0, err
		}
		cps = append(cps, time.Since(start))
		os.RemoveAll(to)
	}
	if keep {
		if err := b.edgeRun(ctx, "bundle", "import", bundle, "--data", b.edge); err != nil {
			return 0, 0, err
		}
	}
	return median(imps), median(cps), nil
}

// statusBack carries the cluster's status to the hub by a status bundle
// at path, so that the hub knows what the cluster holds.
func (b *bench) statusBack(ctx context.Context, path string) error {
	if err := b.edgeRun(ctx, "bundle", "export-status", "--data", b.edge, "--out", path); err != nil {
		return err
	}
	_, err := b.hub.Run(ctx, "bundle", "import-status", path)
	return err
}

func (b *bench) edgeRun(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, b.outpost, args...)
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("outpost %s: %w\n%s", strings.Join(args, " "), err, o)
	}
	return nil
}

func (b *bench) print(rs []result) {
	fmt.Printf("\nv1 -> v2 of a %s model (float32 weights N(0, 0.05²); changed weights moved by N(0, 0.01²)), pushed with --parent\n", benchhub.FormatSize(b.size))
	fmt.Printf("%-18s %12s %12s %12s %9s %9s %9s\n", "scenario", "bundle", "OCI copy", "rsync batch", "/v2", "/OCI", "/rsync")
	for _, r := range rs {
		how := "packs"
		if r.deltas {
			how = "weight deltas"
		}
		fmt.Printf("%-18s %12d %12d %12d %8.3fx %8.3fx %8.3fx  (%s)\n", fmt.Sprintf("%d%% changed", r.change), r.bundle, r.oci, r.rsyncBatch,
			float64(r.bundle)/float64(r.v2), float64(r.bundle)/float64(r.oci), float64(r.bundle)/float64(r.rsyncBatch), how)
	}
	fmt.Printf("\nimport vs copying the same bytes on the same disk (each file fsynced), median of %d\n", b.runs)
	fmt.Printf("%-28s %12s %9s %9s %9s\n", "bundle", "bytes", "import s", "copy s", "ratio")
	for _, r := range rs {
		fmt.Printf("%-28s %12d %9.2f %9.2f %8.2fx\n", fmt.Sprintf("v1 full (%d%% scenario)", r.change), r.full, r.importFull.Seconds(), r.copyFull.Seconds(), r.importFull.Seconds()/r.copyFull.Seconds())
		fmt.Printf("%-28s %12d %9.2f %9.2f %8.2fx\n", fmt.Sprintf("  as %s tar parts", b.parts), r.full, r.importParts.Seconds(), r.copyParts.Seconds(), r.importParts.Seconds()/r.copyParts.Seconds())
		fmt.Printf("%-28s %12d %9.2f %9.2f %8.2fx\n", fmt.Sprintf("v1 -> v2 (%d%% changed)", r.change), r.bundle, r.importV2.Seconds(), r.copyV2.Seconds(), r.importV2.Seconds()/r.copyV2.Seconds())
	}
	fmt.Println("\nbundle: the folder `outpost bundle create` writes for a cluster known to hold v1 (manifests, config,")
	fmt.Println("chunk index, signature-free referrers, signed contents). OCI copy: `oras copy --to-oci-layout` of v2.")
	fmt.Println("rsync batch: `rsync -a --write-batch` from v2 onto a copy of v1 (the batch file alone).")
	fmt.Println("import: `outpost bundle import` into a copy of the cluster's data directory (process start, signature,")
	fmt.Println("every digest, rebuilding files from packs or deltas, fsync, activation).")
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// copyTree copies the files under src to dst, fsyncing each when sync is
// set.
func copyTree(src, dst string, sync bool) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		defer in.Close()
		fi, _ := in.Stat()
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if sync {
			if err := out.Sync(); err != nil {
				out.Close()
				return err
			}
		}
		return out.Close()
	})
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/bundle:", err)
	os.Exit(1)
}
