package cli

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
)

// demoCanaryDeployment is the demo's deployment as a Canary rollout: ship-1 (region north)
// first, then one cluster at a time, each wave baked two seconds.
const demoCanaryDeployment = `apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: fashion
spec:
  model: {name: fashion, version: "^1.0"}
  requireSignature: true
  clusterSelectors:
  - matchLabels: {tier: edge}
  rollout:
    strategy: Canary
    canary: {selector: {matchLabels: {region: north}}}
    maxUnavailable: 1
    bakeTime: 2s
    silentAfter: 30s
`

// rolloutScene turns the deployment into a Canary rollout and pushes a signed version that
// does not load: it stops at its canary, which is rolled back with the reason, while the
// other clusters never leave the good version.
func (d *demo) rolloutScene(edges []*edge, keyFile string) error {
	good := edges[0].active(d.ctx, "fashion")
	d.step("Roll out a broken version as a Canary: it stops at %s and is rolled back; the others keep %s", edges[0].name, good)
	spec := filepath.Join(d.dir, "deployment-canary.yaml")
	if err := os.WriteFile(spec, []byte(demoCanaryDeployment), 0o644); err != nil {
		return err
	}
	d.show("apply", "-f", spec)
	bad := filepath.Join(d.dir, "model-broken")
	if err := os.MkdirAll(bad, 0o755); err != nil {
		return err
	}
	junk := make([]byte, 64<<10)
	rand.Read(junk)
	if err := os.WriteFile(filepath.Join(bad, "model.onnx"), junk, 0o644); err != nil {
		return err
	}
	const broken = "1.9.0"
	d.show("model", "push", bad, "--name", "fashion", "--version", broken)
	d.show("model", "sign", "fashion@"+broken, "--key", keyFile)

	var st *v1alpha1.RolloutStatus
	var md v1alpha1.ModelDeployment
	took := map[string]bool{}
	failed := d.poll(60*time.Second, func() bool {
		for _, e := range edges {
			if e.active(d.ctx, "fashion") == broken {
				took[e.name] = true
			}
		}
		out, err := d.run("get", "modeldeployment", "fashion", "-o", "json")
		if err != nil || json.Unmarshal([]byte(out), &md) != nil {
			return false
		}
		st = md.Status.Rollout
		return st != nil && st.Target.Version == broken && st.Phase == v1alpha1.RolloutFailed
	})
	d.check(failed, "the canary's gate failed and stopped the rollout of %s", broken)
	c := meta.FindStatusCondition(md.Status.Conditions, v1alpha1.ConditionRolloutFailed)
	d.check(c != nil && c.Status == metav1.ConditionTrue, "condition RolloutFailed: %s", conditionMessage(c))
	back := d.poll(30*time.Second, func() bool { return edges[0].active(d.ctx, "fashion") == good })
	d.check(back, "%s was rolled back to %s, a downgrade the hub decided and gave its reason for", edges[0].name, good)
	// The rollback is a reasoned downgrade, not a regression.
	edges[0].highest = good
	others := true
	for _, e := range edges[1:] {
		others = others && !took[e.name] && e.active(d.ctx, "fashion") == good
	}
	d.check(others, "no other cluster ever served %s; they keep %s", broken, good)
	d.check(d.waitHub(good, 30*time.Second, edges...), "the hub shows %s active on every cluster again", good)
	d.show("rollout", "status", "fashion")
	return nil
}

func conditionMessage(c *metav1.Condition) string {
	if c == nil {
		return "absent"
	}
	return strings.TrimSpace(c.Message)
}
