package cli

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/pki"
)

// The demo's air-gapped scene: a cluster with no link at all (a submarine)
// is brought up to date by a bundle carried on a disk, in parts, and its
// drift and status come back to the hub by bundle.

// airgapScene provisions the air-gapped cluster at the depot (one join over
// the network, which pins the hub's bundle key and records the cluster's),
// runs its agent with no route to the hub, and walks both directions.
func (d *demo) airgapScene(hubDir, addr, token, trustedKey string, testSet *dataset.Set) error {
	sub := &edge{name: "sub-1", labels: "tier=edge,link=none", dir: filepath.Join(d.dir, "sub-1")}
	d.step("Provision %s at the depot: it joins once, pinning the hub's bundle key; then it sails with no link at all", sub.name)
	caPEM, err := os.ReadFile(filepath.Join(hubDir, "pki", "ca.crt"))
	if err != nil {
		return err
	}
	tlsCfg, err := pki.ClientTLS(caPEM)
	if err != nil {
		return err
	}
	a, err := agent.New(d.ctx, agent.Config{Dir: sub.dir, Hub: "https://" + addr, Name: sub.name, JoinToken: token, TLS: tlsCfg,
		Labels: map[string]string{"tier": "edge", "link": "none"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	err = a.Join(d.ctx)
	a.Close()
	if !d.check(err == nil, "%s joined at the depot%s", sub.name, errNote(err)) {
		return nil
	}
	if sub.serve, err = freeAddr(); err != nil {
		return err
	}
	nowhere, err := freeAddr() // nothing listens there: the agent never reaches a hub
	if err != nil {
		return err
	}
	ready := filepath.Join(d.dir, sub.name+".ready")
	if err := d.spawn(filepath.Join(d.dir, sub.name+".log"), "agent", "--hub", "https://"+nowhere, "--data", sub.dir,
		"--ready-file", ready, "--trusted-key", trustedKey, "--serve", sub.serve, "--report-interval", "1s"); err != nil {
		return err
	}
	if err := waitFile(d.ctx, ready, 60*time.Second); err != nil {
		return fmt.Errorf("agent %s did not start: %w", sub.name, err)
	}
	d.note("%s runs, its hub address leads nowhere; it serves on http://%s", sub.name, sub.serve)
	want := d.hubVersion()

	usb := filepath.Join(d.dir, "usb")
	d.step("At the hub: a bundle of what %s needs for fashion %s, in parts small enough for the disks at hand", sub.name, want)
	fi, err := os.Stat(filepath.Join(d.dir, "model-v1", "model.onnx"))
	if err != nil {
		return err
	}
	part := max(fi.Size()/3, 64<<10)
	out := d.show("bundle", "create", "--cluster", sub.name, "--out", usb, "--max-part-size", fmt.Sprint(part))
	d.check(strings.Contains(out, "bundle"), "the hub signed the bundle's contents and its list of parts")
	parts, _ := filepath.Glob(filepath.Join(usb, "*.tar"))
	d.note("%d parts and bundle.parts.json on the disk", len(parts))

	d.step("On board: import the bundle; the running agent picks the new version up")
	d.show("bundle", "import", usb, "--data", sub.dir, "--trusted-key", trustedKey)
	d.check(d.poll(30*time.Second, func() bool { return sub.active(d.ctx, "fashion") == want }),
		"%s serves fashion %s, brought by hand, signature and every digest verified", sub.name, want)
	_, err = d.run("bundle", "import", usb, "--data", sub.dir, "--trusted-key", trustedKey)
	d.check(err == nil, "importing the same bundle again changes nothing%s", errNote(err))

	d.step("%s serves its crew and monitors its inputs on its own; the window reports wait in its outbox", sub.name)
	client := &http.Client{Timeout: 10 * time.Second}
	serving := d.poll(30*time.Second, func() bool {
		_, v, err := demoInfer(d.ctx, client, sub.serve, testSet, 0, 1)
		return err == nil && v == want
	})
	if !d.check(serving, "%s answers inference requests with %s", sub.name, want) {
		return nil
	}
	clean := testSet.Slice(demoReference, testSet.Len())
	shifted := washedOut(testSet.Slice(0, demoReference))
	if _, err := d.inferAll(client, sub, clean, ""); err != nil {
		d.check(false, "inference on %s: %v", sub.name, err)
		return nil
	}
	if _, err := d.inferAll(client, sub, shifted, ""); err != nil {
		d.check(false, "inference on %s: %v", sub.name, err)
		return nil
	}
	windows := uint64((clean.Len() + shifted.Len()) / demoWindow)
	var records int64
	var ds *agent.DriftState
	closed := d.poll(30*time.Second, func() bool {
		ds, records, _ = driftOf(d.ctx, sub)
		return ds != nil && ds.Windows >= windows && records >= int64(windows)
	})
	alarm := ds != nil && ds.Alarm
	d.check(closed, "%s tested %d windows against %s's reference on its own (alarm: %v); %d records wait in its outbox",
		sub.name, windowsOf(ds), want, alarm, records)

	d.step("The way back: a status bundle, signed with %s's own key, imported at the hub", sub.name)
	status := filepath.Join(usb, "status-1.json")
	d.show("bundle", "export-status", "--data", sub.dir, "--out", status)
	d.show("bundle", "import-status", status)
	row := d.hubDriftRow(sub.name)
	d.check(row != nil && uint64(row.Windows) == windows && row.Alarm == alarm, "the hub has each of %s's %d windows once, and its verdict", sub.name, windows)
	_, err = d.run("bundle", "import-status", status)
	d.check(err != nil && strings.Contains(err.Error(), "already imported"), "the same status bundle again is refused: %v", firstLine(err))
	d.show("get", "modeldeployment", "fashion", "-o", "wide")

	d.step("The next bundle acknowledges the status bundle: %s frees its outbox", sub.name)
	usb2 := filepath.Join(d.dir, "usb-2")
	d.show("bundle", "create", "--cluster", sub.name, "--out", usb2)
	d.show("bundle", "import", usb2, "--data", sub.dir, "--trusted-key", trustedKey)
	s, err := sub.status(d.ctx)
	d.check(err == nil && s.Outbox.Records == 0, "%s's outbox is empty: the hub has everything", sub.name)
	return nil
}

// hubVersion is the version of deployment fashion the hub resolved.
func (d *demo) hubVersion() string {
	out, err := d.run("get", "modeldeployment", "fashion", "-o", "json")
	var md v1alpha1.ModelDeployment
	if err != nil || json.Unmarshal([]byte(out), &md) != nil {
		return ""
	}
	return md.Status.ResolvedVersion
}
