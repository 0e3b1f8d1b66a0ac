package charttest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/internal/kube/kubetest"
)

const namespace = "outpost"

func chartDir(t *testing.T) string {
	return filepath.Join(kubetest.RepoRoot(t), "deploy", "helm", "outpost")
}

// render runs helm template with the values in sets (--set arguments) and
// returns the rendered objects.
func render(t *testing.T, helm *kubetest.Tool, sets ...string) []*unstructured.Unstructured {
	t.Helper()
	args := []string{"template", "rel", chartDir(t), "--namespace", namespace}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, err := helm.Run(t.Context(), "", args...)
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, out)
}

func parse(t *testing.T, manifests string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(manifests, "\n---") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs
}

// find returns the object of kind named name, or nil.
func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func kinds(objs []*unstructured.Unstructured) []string {
	var ks []string
	for _, o := range objs {
		ks = append(ks, o.GetKind()+"/"+o.GetName())
	}
	slices.Sort(ks)
	return ks
}

// The value sets the tests render: the hub (the default), the agent alone,
// and the hub with a TLS Secret of the user's.
var (
	hubValues   = []string{"hub.extraSANs={hub.example.com,10.1.2.3}", "hub.persistence.size=50Gi"}
	agentValues = []string{"hub.enabled=false", "controller.enabled=false", "agent.enabled=true",
		"agent.clusterName=edge-1", "agent.args={--max-bandwidth,10MiB}", "agent.hub.url=https://hub.example:8443",
		"agent.hub.ca=-----BEGIN CERTIFICATE-----", "agent.hub.joinTokenSecret=outpost-join"}
	ownTLSValues = []string{"hub.tls.secretName=my-hub-tls", "controller.enabled=false"}
)

func TestLint(t *testing.T) {
	helm := kubetest.Helm(t, "")
	for _, sets := range [][]string{nil, hubValues, agentValues, ownTLSValues} {
		args := []string{"lint", "--strict", chartDir(t)}
		for _, s := range sets {
			args = append(args, "--set", s)
		}
		if out, err := helm.Run(t.Context(), "", args...); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	}
}

func TestHub(t *testing.T) {
	helm := kubetest.Helm(t, "")
	objs := render(t, helm, hubValues...)
	want := []string{"ClusterRole/rel-outpost-controller", "ClusterRoleBinding/rel-outpost-controller", "Secret/rel-outpost-hub-tls",
		"Service/rel-outpost-hub", "ServiceAccount/rel-outpost-controller", "StatefulSet/rel-outpost-hub"}
	if got := kinds(objs); !slices.Equal(got, want) {
		t.Fatalf("rendered %v, want %v", got, want)
	}
	sts := find(objs, "StatefulSet", "rel-outpost-hub")
	containers, _, _ := unstructured.NestedSlice(sts.Object, "spec", "template", "spec", "containers")
	var cmds []string
	for _, c := range containers {
		c := c.(map[string]any)
		cmd, _, _ := unstructured.NestedStringSlice(c, "command")
		args, _, _ := unstructured.NestedStringSlice(c, "args")
		cmds = append(cmds, strings.Join(append(cmd, args...), " "))
	}
	wantCmds := []string{"outpost hub serve --data=/var/lib/outpost/hub --listen=0.0.0.0:8443",
		"outpost controller --in-cluster --ca-file=/var/lib/outpost/hub/pki/ca.crt"}
	if !slices.Equal(cmds, wantCmds) {
		t.Errorf("containers run %q, want %q", cmds, wantCmds)
	}
	claims, _, _ := unstructured.NestedSlice(sts.Object, "spec", "volumeClaimTemplates")
	if len(claims) != 1 {
		t.Fatalf("volumeClaimTemplates %v", claims)
	}
	if size, _, _ := unstructured.NestedString(claims[0].(map[string]any), "spec", "resources", "requests", "storage"); size != "50Gi" {
		t.Errorf("hub volume %q, want 50Gi", size)
	}
	checkCertificate(t, find(objs, "Secret", "rel-outpost-hub-tls"),
		[]string{"rel-outpost-hub", "rel-outpost-hub.outpost.svc", "hub.example.com"}, "10.1.2.3")
	checkRules(t, find(objs, "ClusterRole", "rel-outpost-controller"), map[string][]string{
		"ml.outpost.dev":                     {"clusters", "clusters/status", "modeldeployments", "modeldeployments/status", "pipelineruns", "pipelineruns/status", "pipelines", "pipelines/status"},
		"control.kubestellar.io":             {"bindingpolicies", "combinedstatuses", "statuscollectors"},
		"cluster.open-cluster-management.io": {"managedclusters"},
	}, map[string]bool{"managedclusters": true, "combinedstatuses": true})
}

func TestAgent(t *testing.T) {
	helm := kubetest.Helm(t, "")
	objs := render(t, helm, agentValues...)
	want := []string{"ClusterRole/rel-outpost-agent", "ClusterRoleBinding/rel-outpost-agent", "ConfigMap/rel-outpost-agent-hub-ca",
		"Deployment/rel-outpost-agent", "PersistentVolumeClaim/rel-outpost-agent", "ServiceAccount/rel-outpost-agent"}
	if got := kinds(objs); !slices.Equal(got, want) {
		t.Fatalf("rendered %v, want %v", got, want)
	}
	dep := find(objs, "Deployment", "rel-outpost-agent")
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	wantArgs := []string{"agent", "--in-cluster", "--name=edge-1", "--data=/var/lib/outpost/agent",
		"--hub=https://hub.example:8443", "--ca-file=/etc/outpost/hub/ca.crt", "--max-bandwidth", "10MiB"}
	if !slices.Equal(args, wantArgs) {
		t.Errorf("agent args %q, want %q", args, wantArgs)
	}
	envs, _, _ := unstructured.NestedSlice(containers[0].(map[string]any), "env")
	if len(envs) != 2 || envs[1].(map[string]any)["name"] != "OUTPOST_JOIN_TOKEN" {
		t.Errorf("agent env %v: want OUTPOST_JOIN_TOKEN from outpost-join", envs)
	} else if ref, _, _ := unstructured.NestedString(envs[1].(map[string]any), "valueFrom", "secretKeyRef", "name"); ref != "outpost-join" {
		t.Errorf("join token from %q, want outpost-join", ref)
	}
	if ca, _, _ := unstructured.NestedString(find(objs, "ConfigMap", "rel-outpost-agent-hub-ca").Object, "data", "ca.crt"); !strings.HasPrefix(ca, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("hub CA ConfigMap holds %q", ca)
	}
	if sa, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "spec", "serviceAccountName"); sa != "rel-outpost-agent" {
		t.Errorf("agent runs as %q", sa)
	}
	// The agent reads the Outpost kinds and writes their status, nothing else.
	checkRules(t, find(objs, "ClusterRole", "rel-outpost-agent"), map[string][]string{
		"ml.outpost.dev": {"clusters", "modeldeployments", "modeldeployments/status", "pipelineruns", "pipelines"},
	}, map[string]bool{"clusters": true, "modeldeployments": true, "pipelines": true, "pipelineruns": true})

	// Without a cluster name or a hub the chart refuses, naming the value.
	for missing, sets := range map[string][]string{
		"agent.clusterName": {"agent.enabled=true", "agent.hub.url=https://hub.example:8443"},
		"agent.hub.url":     {"agent.enabled=true", "agent.clusterName=edge-1"},
	} {
		_, err := helm.Run(t.Context(), "", "template", "rel", chartDir(t), "--set", strings.Join(sets, ","))
		if err == nil || !strings.Contains(err.Error(), missing+" is required") {
			t.Errorf("agent without %s: %v", missing, err)
		}
	}
}

func TestOwnTLS(t *testing.T) {
	helm := kubetest.Helm(t, "")
	objs := render(t, helm, ownTLSValues...)
	for _, o := range objs {
		if o.GetKind() == "Secret" {
			t.Errorf("rendered a Secret %s with hub.tls.secretName set", o.GetName())
		}
	}
	sts := find(objs, "StatefulSet", "rel-outpost-hub")
	vols, _, _ := unstructured.NestedSlice(sts.Object, "spec", "template", "spec", "volumes")
	found := false
	for _, v := range vols {
		if name, _, _ := unstructured.NestedString(v.(map[string]any), "secret", "secretName"); name == "my-hub-tls" {
			found = true
		}
	}
	if !found {
		t.Errorf("the hub does not mount my-hub-tls: %v", vols)
	}
	containers, _, _ := unstructured.NestedSlice(sts.Object, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Errorf("%d containers with the controller off", len(containers))
	}
}

// checkCertificate checks that secret holds a key pair whose certificate
// its CA signed, for the names and ip.
func checkCertificate(t *testing.T, secret *unstructured.Unstructured, names []string, ip string) {
	t.Helper()
	if secret == nil {
		t.Fatal("no TLS Secret")
	}
	data := map[string][]byte{}
	for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
		s, _, _ := unstructured.NestedString(secret.Object, "data", k)
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) == 0 {
			t.Fatalf("Secret %s: %v", k, err)
		}
		data[k] = b
	}
	pair, err := tls.X509KeyPair(data["tls.crt"], data["tls.key"])
	if err != nil {
		t.Fatalf("key pair: %v", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	block, _ := pem.Decode(data["ca.crt"])
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots.AddCert(ca)
	for _, name := range append(names, ip) {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("certificate for %s: %v", name, err)
		}
	}
}

// checkRules checks that role grants exactly the resources of each API
// group, no wildcard, and only reads on those in readOnly.
func checkRules(t *testing.T, role *unstructured.Unstructured, want map[string][]string, readOnly map[string]bool) {
	t.Helper()
	if role == nil {
		t.Fatal("no role")
	}
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	got := map[string][]string{}
	for _, r := range rules {
		r := r.(map[string]any)
		groups, _, _ := unstructured.NestedStringSlice(r, "apiGroups")
		resources, _, _ := unstructured.NestedStringSlice(r, "resources")
		verbs, _, _ := unstructured.NestedStringSlice(r, "verbs")
		for _, s := range slices.Concat(groups, resources, verbs) {
			if strings.Contains(s, "*") {
				t.Errorf("%s: wildcard %q in %v", role.GetName(), s, r)
			}
		}
		for _, g := range groups {
			got[g] = append(got[g], resources...)
		}
		for _, res := range resources {
			if !readOnly[res] {
				continue
			}
			for _, v := range verbs {
				if v != "get" && v != "list" && v != "watch" {
					t.Errorf("%s: %s on %s, want reads only", role.GetName(), v, res)
				}
			}
		}
	}
	for g := range got {
		slices.Sort(got[g])
		got[g] = slices.Compact(got[g])
	}
	if len(got) != len(want) {
		t.Errorf("%s: API groups %v, want %v", role.GetName(), got, want)
	}
	for g, res := range want {
		if !slices.Equal(got[g], res) {
			t.Errorf("%s: %s resources %v, want %v", role.GetName(), g, got[g], res)
		}
	}
}

// The chart's CRDs are deploy/crds's (make generate copies them).
func TestCRDsCopied(t *testing.T) {
	root := kubetest.RepoRoot(t)
	src, err := filepath.Glob(filepath.Join(root, "deploy", "crds", "*.yaml"))
	if err != nil || len(src) == 0 {
		t.Fatalf("deploy/crds: %v", err)
	}
	dst, _ := filepath.Glob(filepath.Join(chartDir(t), "crds", "*.yaml"))
	if len(dst) != len(src) {
		t.Errorf("chart has %d CRDs, deploy/crds %d (run make generate)", len(dst), len(src))
	}
	for _, s := range src {
		a, _ := os.ReadFile(s)
		b, err := os.ReadFile(filepath.Join(chartDir(t), "crds", filepath.Base(s)))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("chart's crds/%s differs from deploy/crds (run make generate): %v", filepath.Base(s), err)
		}
	}
}

// The apiserver accepts what the chart renders (server-side dry run), and a
// release installed and upgraded keeps its generated certificate.
func TestAPIServer(t *testing.T) {
	api := kubetest.Start(t)
	kubectl := api.Kubectl(t)
	helm := kubetest.Helm(t, api.Kubeconfig)
	ctx := t.Context()
	if _, err := kubectl.Run(ctx, "", "create", "namespace", namespace); err != nil {
		t.Fatal(err)
	}
	for _, sets := range [][]string{hubValues, agentValues, ownTLSValues} {
		args := []string{"template", "rel", chartDir(t), "--namespace", namespace}
		for _, s := range sets {
			args = append(args, "--set", s)
		}
		manifests, err := helm.Run(ctx, "", args...)
		if err != nil {
			t.Fatal(err)
		}
		out, err := kubectl.Run(ctx, manifests, "apply", "--dry-run=server", "--namespace", namespace, "-f", "-")
		if err != nil {
			t.Errorf("values %v: %v", sets, err)
		}
		if n := strings.Count(out, "(server dry run)"); n != len(parse(t, manifests)) {
			t.Errorf("values %v: %d objects accepted, %d rendered:\n%s", sets, n, len(parse(t, manifests)), out)
		}
	}

	if _, err := helm.Run(ctx, "", "install", "rel", chartDir(t), "--namespace", namespace); err != nil {
		t.Fatal(err)
	}
	cert := func() string {
		out, err := kubectl.Run(ctx, "", "get", "secret", "rel-outpost-hub-tls", "--namespace", namespace, "-o", "jsonpath={.data.tls\\.crt}")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := cert()
	if _, err := helm.Run(ctx, "", "upgrade", "rel", chartDir(t), "--namespace", namespace, "--set", "hub.args={--require-signature}"); err != nil {
		t.Fatal(err)
	}
	if after := cert(); after != before || after == "" {
		t.Errorf("the upgrade changed the hub's certificate")
	}
	sts, err := kubectl.Run(ctx, "", "get", "statefulset", "rel-outpost-hub", "--namespace", namespace, "-o", "jsonpath={.metadata.name}")
	if err != nil || sts != "rel-outpost-hub" {
		t.Errorf("installed StatefulSet: %q, %v", sts, err)
	}

	// The apiserver's RBAC lets each component do what it needs and no more.
	if _, err := kubectl.Run(ctx, "", "create", "namespace", "edge"); err != nil {
		t.Fatal(err)
	}
	args := []string{"install", "agent", chartDir(t), "--namespace", "edge"}
	for _, s := range agentValues {
		args = append(args, "--set", s)
	}
	if _, err := helm.Run(ctx, "", args...); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		who, verb, resource string
		allowed             bool
	}{
		{"edge:agent-outpost-agent", "watch", "modeldeployments.ml.outpost.dev", true},
		{"edge:agent-outpost-agent", "update", "modeldeployments.ml.outpost.dev/status", true},
		{"edge:agent-outpost-agent", "update", "modeldeployments.ml.outpost.dev", false},
		{"edge:agent-outpost-agent", "delete", "clusters.ml.outpost.dev", false},
		{"edge:agent-outpost-agent", "get", "secrets", false},
		{"edge:agent-outpost-agent", "list", "pods", false},
		{"outpost:rel-outpost-controller", "create", "bindingpolicies.control.kubestellar.io", true},
		{"outpost:rel-outpost-controller", "list", "combinedstatuses.control.kubestellar.io", true},
		{"outpost:rel-outpost-controller", "delete", "combinedstatuses.control.kubestellar.io", false},
		{"outpost:rel-outpost-controller", "update", "modeldeployments.ml.outpost.dev/status", true},
		{"outpost:rel-outpost-controller", "create", "clusters.ml.outpost.dev", true},
		{"outpost:rel-outpost-controller", "list", "managedclusters.cluster.open-cluster-management.io", true},
		{"outpost:rel-outpost-controller", "update", "managedclusters.cluster.open-cluster-management.io", false},
		{"outpost:rel-outpost-controller", "get", "secrets", false},
		{"outpost:rel-outpost-controller", "create", "deployments.apps", false},
	} {
		if got := allowed(t, kubectl, tt.who, tt.verb, tt.resource); got != tt.allowed {
			t.Errorf("%s may %s %s: %v, want %v", tt.who, tt.verb, tt.resource, got, tt.allowed)
		}
	}
}

// allowed asks the apiserver (a SubjectAccessReview) whether the service
// account who (NAMESPACE:NAME) may verb resource (RESOURCE.GROUP[/SUBRESOURCE])
// in any namespace.
func allowed(t *testing.T, kubectl *kubetest.Tool, who, verb, resource string) bool {
	t.Helper()
	ns, _, _ := strings.Cut(who, ":")
	res, sub, _ := strings.Cut(resource, "/")
	res, group, _ := strings.Cut(res, ".")
	review := fmt.Sprintf(`apiVersion: authorization.k8s.io/v1
kind: SubjectAccessReview
spec:
  user: system:serviceaccount:%s
  groups: [system:serviceaccounts, "system:serviceaccounts:%s", system:authenticated]
  resourceAttributes: {group: %q, resource: %q, subresource: %q, verb: %q}
`, who, ns, group, res, sub, verb)
	out, err := kubectl.Run(t.Context(), review, "create", "-f", "-", "-o", "jsonpath={.status.allowed}")
	if err != nil {
		t.Fatal(err)
	}
	return out == "true"
}
