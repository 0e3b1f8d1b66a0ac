package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"outpost.dev/outpost/internal/bytesize"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/linksim"
)

// The demo's compression scene: the fleet's model is compressed into an
// int8 variant within an accuracy budget, and a small camera box behind a
// thin link is sent that variant, saying why, and answers from it.

// demoCameraLink is the camera box's link rate.
const demoCameraLink = 128 << 10

// compressScene compresses fashion@version, starts the camera box's agent
// and deploys the version to it under a memory limit.
func (d *demo) compressScene(addr, caFile, token, trustedKey, signKey, version string, modelSize int64, trainSet, testSet *dataset.Set) error {
	d.step("Compress fashion@%s: an int8 variant within 1 point of its accuracy, pushed beside it, then signed", version)
	data := filepath.Join(d.dir, "compress-data")
	for split, set := range map[string]*dataset.Set{"train": trainSet, "t10k": testSet} {
		if err := dataset.WriteDir(data, split, set); err != nil {
			return err
		}
	}
	d.show("model", "compress", "fashion@"+version, "--data", data, "--recipes", "int8", "--max-accuracy-drop", "1")
	d.show("model", "sign", "fashion@"+version, "--variant", "int8", "--key", signKey)
	show, err := d.run("model", "show", "fashion@"+version)
	if !d.check(err == nil && strings.Contains(show, "int8-static"), "model show fashion@%s lists its int8 variant%s", version, errNote(err)) {
		return nil
	}

	cam := &edge{name: "camera-1", labels: "tier=camera", dir: filepath.Join(d.dir, "camera-1")}
	memory := "12Mi" // 25% is 3 MiB: the int8 variant serves in about 2.4 MiB, the original needs 3.6
	d.step("Start %s: a small box (it declares %s of memory) behind a thin link (%s/s)", cam.name, memory, bytesize.Format(demoCameraLink))
	clusterYAML := filepath.Join(d.dir, "camera.yaml")
	if err := os.WriteFile(clusterYAML, []byte(fmt.Sprintf(`apiVersion: ml.outpost.dev/v1alpha1
kind: Cluster
metadata: {name: %s, labels: {tier: camera}}
spec:
  capacity: {memory: %s}
`, cam.name, memory)), 0o644); err != nil {
		return err
	}
	d.show("apply", "-f", clusterYAML)
	if cam.link, err = linksim.Listen(addr, linksim.Options{Bandwidth: demoCameraLink}); err != nil {
		return err
	}
	d.edges = append(d.edges, cam)
	if cam.serve, err = freeAddr(); err != nil {
		return err
	}
	ready := filepath.Join(d.dir, cam.name+".ready")
	if err := d.spawn(filepath.Join(d.dir, cam.name+".log"), "agent", "--hub", "https://"+cam.link.Addr(), "--ca-file", caFile,
		"--join-token", token, "--data", cam.dir, "--name", cam.name, "--labels", cam.labels, "--ready-file", ready,
		"--trusted-key", trustedKey, "--serve", cam.serve, "--poll-timeout", "5s", "--report-interval", "1s"); err != nil {
		return err
	}
	if err := waitFile(d.ctx, ready, 60*time.Second); err != nil {
		return fmt.Errorf("agent %s did not start (log in %s): %w", cam.name, filepath.Join(d.dir, cam.name+".log"), err)
	}
	cam.link.ResetStats()

	d.step("Deploy fashion@%s to tier=camera, each cluster's variant taking at most 25%% of its memory", version)
	spec := filepath.Join(d.dir, "camera-deployment.yaml")
	if err := os.WriteFile(spec, []byte(fmt.Sprintf(`apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: fashion-camera
spec:
  model: {name: fashion, version: "%s"}
  requireSignature: true
  clusterSelectors:
  - matchLabels: {tier: camera}
  variantPolicy: {maxMemoryPercent: 25}
`, version)), 0o644); err != nil {
		return err
	}
	d.show("apply", "-f", spec)
	active := waitFor(d.ctx, 2*time.Minute, func() bool { return cam.active(d.ctx, "fashion-camera") == version })
	if !d.check(active, "%s fetched, verified and activated %s", cam.name, version) {
		return nil
	}
	var row struct {
		Variant, VariantReason, ActiveVariant, Phase string
	}
	waitFor(d.ctx, 30*time.Second, func() bool {
		row.Variant, row.VariantReason, row.ActiveVariant, row.Phase = "", "", "", ""
		out, err := d.run("get", "modeldeployment", "fashion-camera", "-o", "json")
		var md struct {
			Status struct {
				Clusters []struct {
					Cluster, Variant, VariantReason, ActiveVariant, Phase string
				}
			}
		}
		if err != nil || json.Unmarshal([]byte(out), &md) != nil || len(md.Status.Clusters) != 1 {
			return false
		}
		c := md.Status.Clusters[0]
		row.Variant, row.VariantReason, row.ActiveVariant, row.Phase = c.Variant, c.VariantReason, c.ActiveVariant, c.Phase
		return c.Phase == "Active" && c.ActiveVariant != ""
	})
	d.show("get", "modeldeployment", "fashion-camera", "-o", "wide")
	d.check(row.Variant == "int8" && row.Phase == "Active" && strings.HasPrefix(row.VariantReason, "int8: the most accurate that fits"), "the hub chose the int8 variant for %s: %s", cam.name, row.VariantReason)
	d.check(row.ActiveVariant == "int8", "%s reports that it serves the int8 variant (ACTIVE %s (%s))", cam.name, version, row.ActiveVariant)
	down := cam.link.Stats().Down
	d.check(down < modelSize/2, "%s's link carried %s, the full model is %s: only the variant crossed", cam.name,
		bytesize.Format(down), bytesize.Format(modelSize))

	d.step("Ask %s for predictions: the int8 variant answers", cam.name)
	client := &http.Client{Timeout: 10 * time.Second}
	const n = 100
	preds, v, err := demoInfer(d.ctx, client, cam.serve, testSet, 0, n)
	if d.check(err == nil && v == version, "POST http://%s/v2/models/fashion/infer (the deployment fashion-camera) answered with version %s%s", cam.serve, v, errNote(err)) {
		right := 0
		for i, p := range preds {
			if p == int(testSet.Labels[i]) {
				right++
			}
		}
		d.note("%d of the first %d test images right", right, n)
	}
	return nil
}

// waitFor polls cond every 100 ms until it holds or limit passes.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(limit); ; time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
	}
}
