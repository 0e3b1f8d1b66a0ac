package crdtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/kube/kubetest"
)

// deployment is a valid ModelDeployment whose spec, after the model, is rest.
func deployment(model, rest string) string {
	return fmt.Sprintf(`apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata: {name: fashion}
spec:
  model: %s
%s`, model, rest)
}

const (
	goodModel    = `{name: fashion, version: "^1.2"}`
	everyCluster = "  clusterSelectors: [{}]\n"
	goodCluster  = "apiVersion: ml.outpost.dev/v1alpha1\nkind: Cluster\nmetadata: {name: edge-a}\nspec:\n"
	goodRun      = "apiVersion: ml.outpost.dev/v1alpha1\nkind: PipelineRun\nmetadata: {name: run-1}\nspec:\n"
	jobStart     = `apiVersion: ml.outpost.dev/v1alpha1
kind: FederatedJob
metadata: {name: fmnist-fl}
spec:
  model: {name: fmnist, version: 1.0.0, arch: mlp, output: fmnist-fl}
  data: {path: fmnist, format: idx, validationSplit: "0.2"}
`
	jobRounds     = "  rounds: 5\n"
	policyStart   = "apiVersion: ml.outpost.dev/v1alpha1\nkind: CompressionPolicy\nmetadata: {name: shrink}\nspec:\n"
	policyData    = "  data: {path: /var/lib/outpost/fmnist}\n"
	jobEvery      = "  clusterSelectors: [{}]\n"
	pipelineStart = `apiVersion: ml.outpost.dev/v1alpha1
kind: Pipeline
metadata: {name: retrain}
spec:
  clusterSelectors: [{matchLabels: {site: ship}}]
  steps:
`
)

// invalid are objects the hub refuses, each with the field both refusals name.
var invalid = []struct {
	name, doc, field string
}{
	{"bad version", deployment(`{name: fashion, version: "1.x.y"}`, everyCluster), "spec.model.version"},
	{"bad range", deployment(`{name: fashion, version: ">>1"}`, everyCluster), "spec.model.version"},
	{"v prefix", deployment(`{name: fashion, version: "v1.2.3"}`, everyCluster), "spec.model.version"},
	{"hyphen range after a term", deployment(`{name: fashion, version: "1 2 - 3"}`, everyCluster), "spec.model.version"},
	{"unknown field", deployment(`{name: fashion, version: "1.0.0", verison: "1.0.0"}`, everyCluster), "verison"},
	{"empty selectors", deployment(goodModel, "  clusterSelectors: []\n"), "spec.clusterSelectors"},
	{"no selectors", deployment(goodModel, ""), "spec.clusterSelectors"},
	{"selector operator", deployment(goodModel, "  clusterSelectors: [{matchExpressions: [{key: site, operator: Sometimes, values: [a]}]}]\n"),
		"spec.clusterSelectors[0].matchExpressions[0].operator"},
	{"selector In without values", deployment(goodModel, "  clusterSelectors: [{matchExpressions: [{key: site, operator: In}]}]\n"),
		"spec.clusterSelectors[0].matchExpressions[0].values"},
	{"selector Exists with values", deployment(goodModel, "  clusterSelectors: [{matchExpressions: [{key: site, operator: Exists, values: [a]}]}]\n"),
		"spec.clusterSelectors[0].matchExpressions[0].values"},
	{"selector key", deployment(goodModel, "  clusterSelectors: [{matchExpressions: [{key: \"bad key\", operator: Exists}]}]\n"),
		"spec.clusterSelectors[0].matchExpressions[0].key"},
	{"selector label", deployment(goodModel, "  clusterSelectors: [{matchLabels: {\"-site\": ship}}]\n"),
		"spec.clusterSelectors[0].matchLabels"},
	{"selector label value", deployment(goodModel, "  clusterSelectors: [{matchLabels: {site: \"a b\"}}]\n"),
		"spec.clusterSelectors[0].matchLabels"},
	{"canary selector", deployment(goodModel, everyCluster+"  rollout: {strategy: Canary, canary: {selector: {matchExpressions: [{key: site, operator: NotIn}]}}}\n"),
		"spec.rollout.canary.selector.matchExpressions[0].values"},
	{"model name", deployment(`{name: Fashion, version: "1.0.0"}`, everyCluster), "spec.model.name"},
	{"edge model", deployment(`{name: edge/ship/fashion, version: "1.0.0"}`, everyCluster), "spec.model.name"},
	{"port", deployment(goodModel, everyCluster+"  serving: {port: 70000}\n"), "spec.serving.port"},
	{"runtime", deployment(goodModel, everyCluster+"  serving: {runtime: tensorflow}\n"), "spec.serving.runtime"},
	{"wave percentage", deployment(goodModel, everyCluster+"  rollout: {maxUnavailablePercent: 0}\n"), "spec.rollout.maxUnavailablePercent"},
	{"negative wave", deployment(goodModel, everyCluster+"  rollout: {maxUnavailable: -1}\n"), "spec.rollout.maxUnavailable"},
	{"strategy", deployment(goodModel, everyCluster+"  rollout: {strategy: BigBang}\n"), "spec.rollout.strategy"},
	{"wave order", deployment(goodModel, everyCluster+"  rollout: {waveOrder: \"not a key\"}\n"), "spec.rollout.waveOrder"},
	{"bake time", deployment(goodModel, everyCluster+"  rollout: {bakeTime: -1m}\n"), "spec.rollout.bakeTime"},
	{"gate ratio", deployment(goodModel, everyCluster+"  rollout: {gates: {maxLatencyRatio: \"-1\"}}\n"), "spec.rollout.gates.maxLatencyRatio"},
	{"gate requests", deployment(goodModel, everyCluster+"  rollout: {gates: {minRequests: -5}}\n"), "spec.rollout.gates.minRequests"},
	{"window samples", deployment(goodModel, everyCluster+"  monitoring: {windowSamples: 5}\n"), "spec.monitoring.windowSamples"},
	{"window duration", deployment(goodModel, everyCluster+"  monitoring: {windowDuration: 500ms}\n"), "spec.monitoring.windowDuration"},
	{"alpha", deployment(goodModel, everyCluster+"  monitoring: {alpha: \"0.0\"}\n"), "spec.monitoring.alpha"},
	{"raise after", deployment(goodModel, everyCluster+"  monitoring: {raiseAfter: 1001}\n"), "spec.monitoring.raiseAfter"},
	{"feedback samples", deployment(goodModel, everyCluster+"  monitoring: {feedbackSamples: 2000000}\n"), "spec.monitoring.feedbackSamples"},
	{"correction", deployment(goodModel, everyCluster+"  monitoring: {correction: Holm}\n"), "spec.monitoring.correction"},
	{"variant name", deployment(goodModel, everyCluster+"  variantPolicy: {allowed: [int8, INT4]}\n"), "spec.variantPolicy.allowed[1]"},
	{"variant twice", deployment(goodModel, everyCluster+"  variantPolicy: {allowed: [int8, int8]}\n"), "spec.variantPolicy.allowed[1]"},
	{"variant memory", deployment(goodModel, everyCluster+"  variantPolicy: {maxMemoryPercent: 101}\n"), "spec.variantPolicy.maxMemoryPercent"},
	{"variant fetch time", deployment(goodModel, everyCluster+"  variantPolicy: {maxFetchTime: -1m}\n"), "spec.variantPolicy.maxFetchTime"},
	{"variant prefer", deployment(goodModel, everyCluster+"  variantPolicy: {prefer: Fastest}\n"), "spec.variantPolicy.prefer"},
	{"variant preferred", deployment(goodModel, everyCluster+"  variantPolicy: {preferred: int8}\n"), "preferred"},

	{"cluster accelerators", goodCluster + "  capacity: {accelerators: [{type: nvidia.com/gpu, count: -1}]}\n", "spec.capacity.accelerators[0].count"},
	{"cluster cpu", goodCluster + "  capacity: {cpu: \"-2\"}\n", "spec.capacity.cpu"},
	{"cluster name", "apiVersion: ml.outpost.dev/v1alpha1\nkind: Cluster\nmetadata: {name: Edge_A}\n", "metadata.name"},
	{"cluster display name", goodCluster + "  displayName: " + strings.Repeat("x", 257) + "\n", "spec.displayName"},
	{"cluster unknown field", goodCluster + "  zone: north\n", "zone"},
	{"cluster window day", goodCluster + "  transfer: {windows: [{days: [Mon, Someday], start: \"22:00\", end: \"06:00\"}]}\n", "spec.transfer"},
	{"cluster window time", goodCluster + "  transfer: {windows: [{start: \"24:00\", end: \"06:00\"}]}\n", "spec.transfer"},

	{"pipeline retries", pipelineStart + "  - {name: data, type: dataset, retries: {limit: 11}}\n", "spec.steps[0].retries.limit"},
	{"pipeline step timeout", pipelineStart + "  - {name: data, type: dataset, timeout: 0s}\n", "spec.steps[0].timeout"},
	{"pipeline step backoff", pipelineStart + "  - {name: data, type: dataset, retries: {limit: 1, backoff: -1s}}\n", "spec.steps[0].retries.backoff"},
	{"pipeline step name", pipelineStart + "  - {name: Data_1, type: dataset}\n", "spec.steps[0].name"},
	{"pipeline step type", pipelineStart + "  - {name: data, type: crunch}\n", "spec.steps[0].type"},
	{"pipeline no steps", strings.TrimSuffix(pipelineStart, "  steps:\n") + "  steps: []\n", "spec.steps"},
	{"pipeline selector", strings.Replace(pipelineStart, "{matchLabels: {site: ship}}", "{matchExpressions: [{key: site, operator: Near}]}", 1) +
		"  - {name: data, type: dataset}\n", "spec.clusterSelectors[0].matchExpressions[0].operator"},
	{"pipeline trigger", pipelineStart + "  - {name: data, type: dataset}\n  triggers: [{type: Sometimes, deployment: fashion}]\n", "spec.triggers[0].type"},

	{"job no selectors", jobStart + jobRounds, "spec.clusterSelectors"},
	{"job empty selectors", jobStart + jobRounds + "  clusterSelectors: []\n", "spec.clusterSelectors"},
	{"job range version", strings.Replace(jobStart, "version: 1.0.0", `version: "^1.0"`, 1) + jobRounds + jobEvery, "spec.model.version"},
	{"job arch", strings.Replace(jobStart, "arch: mlp", "arch: resnet", 1) + jobRounds + jobEvery, "spec.model.arch"},
	{"job unknown field", jobStart + jobRounds + jobEvery + "  epochs: 3\n", "epochs"},
	{"job no rounds or target", jobStart + jobEvery, "spec"},
	{"job strategy", jobStart + jobRounds + jobEvery + "  strategy: {type: FedSGD}\n", "spec.strategy.type"},
	{"job encoding", jobStart + jobRounds + jobEvery + "  encoding: Int4\n", "spec.encoding"},

	{"policy no models", policyStart + "  models: []\n" + policyData, "spec.models"},
	{"policy model name", policyStart + "  models: [Fashion]\n" + policyData, "spec.models[0]"},
	{"policy no data", policyStart + "  models: [fashion]\n", "spec.data"},
	{"policy data format", policyStart + "  models: [fashion]\n  data: {path: fmnist, format: parquet}\n", "spec.data.format"},
	{"policy drop", policyStart + "  models: [fashion]\n" + policyData + "  maxAccuracyDrop: one\n", "spec.maxAccuracyDrop"},
	{"policy recipe", policyStart + "  models: [fashion]\n" + policyData + "  recipes: [int4]\n", "spec.recipes[0]"},
	{"policy calibration", policyStart + "  models: [fashion]\n" + policyData + "  calibration: -1\n", "spec.calibration"},
	{"policy unknown field", policyStart + "  models: [fashion]\n" + policyData + "  budget: 1\n", "budget"},

	{"run pipeline", goodRun + "  {pipeline: \"\", cluster: edge-a}\n", "spec.pipeline"},
	{"run cluster", goodRun + "  {pipeline: retrain, cluster: Edge_A}\n", "spec.cluster"},
	{"run trigger", goodRun + "  {pipeline: retrain, cluster: edge-a, trigger: Whenever}\n", "spec.trigger"},
	{"run unknown field", goodRun + "  {pipeline: retrain, cluster: edge-a, priority: 3}\n", "priority"},
}

// valid are objects the hub accepts, at the edges of the rules: the
// apiserver accepts them too.
var valid = []struct {
	name, doc string
}{
	{"ranges", deployment(`{name: fashion, version: ">=1.2, <2 || ~3.1 || 4.0 - 4.2"}`, everyCluster)},
	{"exact", deployment(`{name: team/fashion-mlp__v2, version: "=1.3.0-rc.1+build.7"}`, everyCluster)},
	{"selectors", deployment(goodModel, "  clusterSelectors:\n  - {matchLabels: {example.com/site: ship-1, tier: \"\"}}\n"+
		"  - {matchExpressions: [{key: region, operator: In, values: [north, south]}, {key: gpu, operator: DoesNotExist}]}\n")},
	{"zero means default", deployment(goodModel, everyCluster+
		"  rollout: {strategy: Canary, maxUnavailable: 0, canary: {count: 0}, gates: {minRequests: 0, maxLatencyRatio: \"0\"}}\n"+
		"  monitoring: {windowSamples: 0, minSamples: 0, raiseAfter: 0, clearAfter: 0, feedbackSamples: 0}\n")},
	{"full rollout", deployment(goodModel, everyCluster+
		"  rollout: {strategy: Canary, maxUnavailablePercent: 100, waveOrder: topology.kubernetes.io/region, bakeTime: 90s, silentAfter: 1h,\n"+
		"    progressDeadline: 0s, canary: {selector: {matchLabels: {canary: \"true\"}}}, gates: {maxErrorRateIncrease: \".05\", drift: true}}\n"+
		"  serving: {runtime: onnxruntime, port: 65535}\n"+
		"  monitoring: {windowSamples: 1000000, windowDuration: 1s, alpha: \"0.001\", correction: BenjaminiHochberg, psiThreshold: \"1000000\", cooldown: 0s, raiseAfter: 1000}\n")},
	{"variant policy", deployment(goodModel, everyCluster+"  variantPolicy: {allowed: [original, int8, fp16.v2], maxMemoryPercent: 100, maxFetchTime: 10m, prefer: Smallest}\n")},
	{"variant policy zero", deployment(goodModel, everyCluster+"  variantPolicy: {allowed: [], maxMemoryPercent: 0, maxFetchTime: 0s}\n")},
	{"cluster window", goodCluster + "  transfer: {timeZone: Europe/Oslo, windows: [{days: [mon, SAT], start: \"22:00\", end: \"06:00\"}], insideBandwidth: 4MiB}\n"},
	{"cluster", goodCluster + "  displayName: Lyon\n  capacity: {cpu: 500m, memory: 16Gi, disk: \"0\", accelerators: [{type: nvidia.com/gpu, count: 0}]}\n"},
	{"pipeline", pipelineStart + "  - {name: data, type: dataset, retries: {limit: 10, backoff: 1s}, timeout: 10m, resources: {cpu: 500m, minCPU: 500m, memory: 1Gi, minMemory: 128Mi}}\n  triggers: [{type: Drift, deployment: fashion, fromClusters: {matchLabels: {site: ship}}}]\n"},
	{"run", goodRun + "  {pipeline: retrain, cluster: edge-a.lyon, trigger: NewVersion}\n"},
	{"policy every model", policyStart + "  models: [\"*\"]\n" + policyData},
	{"policy full", policyStart + "  models: [fashion, team/fmnist-mlp]\n  data: {path: fmnist, format: idx}\n" +
		"  maxAccuracyDrop: \"0.5\"\n  recipes: [fp16, int8, pruned50-int8]\n  calibration: 256\n"},
	{"federated job", jobStart + jobRounds + "  clusterSelectors: [{matchLabels: {fl: \"on\"}}]\n  targetAccuracy: \"0.8\"\n" +
		"  clients: {min: 2, fraction: \"0.5\", roundTimeout: 2m}\n  training: {epochs: 1, batchSize: 32, learningRate: \"0.05\"}\n" +
		"  strategy: {type: FedProx, mu: \"0.01\"}\n  secureAggregation: true\n" +
		"  privacy: {clipNorm: \"1.0\", noiseMultiplier: \"1.1\", delta: \"1e-5\", epsilon: \"8\"}\n  encoding: Quantized\n"},
}

// hubVerdict is what `outpost apply` and the hub say of doc: decoded
// strictly, defaulted and validated.
func hubVerdict(doc string) error {
	objs, err := v1alpha1.Decode([]byte(doc))
	if err != nil {
		return err
	}
	for _, o := range objs {
		o.Default()
		if err := o.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// server is the apiserver and the ways a user reaches it.
type server struct {
	dyn     dynamic.Interface
	kubectl *kubetest.Tool
}

// apiVerdict is what the apiserver says of creating doc (a dry run, with
// unknown fields refused, as kubectl apply asks).
func (s *server) apiVerdict(ctx context.Context, doc string) error {
	var u unstructured.Unstructured
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		return fmt.Errorf("test document: %w", err)
	}
	k, ok := v1alpha1.LookupKind(u.GetKind())
	if !ok {
		return fmt.Errorf("test document: kind %q", u.GetKind())
	}
	gvr := schema.GroupVersionResource{Group: v1alpha1.GroupName, Version: v1alpha1.Version, Resource: k.Plural}
	_, err := s.dyn.Resource(gvr).Create(ctx, &u, metav1.CreateOptions{
		DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict})
	return err
}

func start(t *testing.T) *server {
	t.Helper()
	api := kubetest.Start(t)
	dyn, err := dynamic.NewForConfig(api.Config)
	if err != nil {
		t.Fatal(err)
	}
	return &server{dyn: dyn, kubectl: api.Kubectl(t)}
}

// One apiserver serves the subtests: starting one takes seconds.
func TestCRDs(t *testing.T) {
	s := start(t)
	t.Run("Invalid", func(t *testing.T) { testInvalid(t, s) })
	t.Run("Valid", func(t *testing.T) { testValid(t, s) })
	t.Run("Versions", func(t *testing.T) { testVersions(t, s) })
	t.Run("DocsExamples", func(t *testing.T) { testDocsExamples(t, s) })
	t.Run("Status", func(t *testing.T) { testStatus(t, s) })
	t.Run("Columns", func(t *testing.T) { testColumns(t, s) })
}

// Each invalid object is refused by the hub's validation, by the apiserver
// and by kubectl apply, each naming the field.
func testInvalid(t *testing.T, s *server) {
	ctx := t.Context()
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			herr := hubVerdict(tt.doc)
			if herr == nil || !strings.Contains(herr.Error(), tt.field) {
				t.Errorf("hub: %v, want an error naming %s", herr, tt.field)
			}
			aerr := s.apiVerdict(ctx, tt.doc)
			if aerr == nil || !strings.Contains(aerr.Error(), tt.field) {
				t.Errorf("apiserver: %v, want an error naming %s", aerr, tt.field)
			}
			_, kerr := s.kubectl.Run(ctx, tt.doc, "apply", "--dry-run=server", "-f", "-")
			if kerr == nil || !strings.Contains(kerr.Error(), tt.field) {
				t.Errorf("kubectl apply: %v, want an error naming %s", kerr, tt.field)
			}
		})
	}
}

// Each valid object is accepted by the hub's validation and the apiserver.
func testValid(t *testing.T, s *server) {
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			if err := hubVerdict(tt.doc); err != nil {
				t.Errorf("hub: %v", err)
			}
			if err := s.apiVerdict(t.Context(), tt.doc); err != nil {
				t.Errorf("apiserver: %v", err)
			}
		})
	}
}

// versionConstraints are constraints at the edges of the syntax, valid and not.
var versionConstraints = []string{
	"1.2.3", "=1.2.3", " = 1.2.3 ", "1.2.3-rc.1+b.7", "1.2.3-0", ">=1.2 <2", ">= 1.2, < 2", "^1.2", "~1.2.3", "~>1.2",
	"!=1.3.0", "1.x", "1.2.X", "*", "1.2 - 1.4.5", ">=1.0 || >=2.0", "~>0 || 0 - 0", "0 - 0||1", "9999999999999999.0.0",
	strings.Repeat("1||", 31) + "1", strings.Repeat("1||", 32) + "1", strings.Repeat("1 ", 127) + "12", strings.Repeat("1 ", 128) + "1",
	"", "   ", "1.x.y", "banana", ">>1", "||", "1 ||", "v1.2.3", "01.2.3", "1.2.3.4", "1.2.3-01", "1.x-beta", "x.1", "=>1.2",
	"1|2", "1 - 2 - 3", "0 0 - 0", "~>0||0 - 0", "1.x||0 - 0", "99999999999999999999.0.0", "1.2.3\x00", "１.2.3",
}

// The hub and the apiserver agree on every constraint of the table.
func testVersions(t *testing.T, s *server) {
	for _, c := range versionConstraints {
		v, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		doc := deployment(fmt.Sprintf("{name: fashion, version: %s}", v), everyCluster)
		herr, aerr := hubVerdict(doc), s.apiVerdict(t.Context(), doc)
		if (herr == nil) != (aerr == nil) {
			t.Errorf("version %q: hub says %v, apiserver says %v", c, herr, aerr)
		}
	}
}

// heredoc finds documents of the API's kinds in the docs: fenced YAML blocks
// and the here-documents of shell blocks.
var (
	fenced  = regexp.MustCompile("(?s)```ya?ml\n(.*?)```")
	heredoc = regexp.MustCompile(`(?s)<<-?'?EOF'?\n(.*?)\nEOF`)
)

// docsExamples returns the documents of the API's kinds in docs/ and the
// README, by file, split on "---".
func docsExamples(t *testing.T) map[string][]string {
	t.Helper()
	root := kubetest.RepoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, f := range append(files, filepath.Join(root, "README.md")) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var blocks []string
		for _, re := range []*regexp.Regexp{fenced, heredoc} {
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				blocks = append(blocks, m[1])
			}
		}
		for _, block := range blocks {
			for _, doc := range strings.Split(block, "\n---\n") {
				if strings.Contains(doc, "apiVersion: "+v1alpha1.APIVersion) && strings.Contains(doc, "\nkind: ") {
					rel, _ := filepath.Rel(root, f)
					out[rel] = append(out[rel], doc)
				}
			}
		}
	}
	return out
}

// Every example of the docs gets the same verdict from the hub and the
// apiserver: the valid ones (most) are accepted by both.
func testDocsExamples(t *testing.T, s *server) {
	ctx := t.Context()
	accepted := map[string]int{}
	for file, docs := range docsExamples(t) {
		for i, doc := range docs {
			herr, aerr := hubVerdict(doc), s.apiVerdict(ctx, doc)
			if (herr == nil) != (aerr == nil) {
				t.Errorf("%s, example %d: hub says %v, apiserver says %v\n%s", file, i+1, herr, aerr, doc)
			}
			if herr == nil {
				objs, _ := v1alpha1.Decode([]byte(doc))
				accepted[objs[0].GetObjectKind().GroupVersionKind().Kind]++
			}
		}
	}
	for _, kind := range []string{v1alpha1.KindCluster, v1alpha1.KindModelDeployment, v1alpha1.KindPipeline} {
		if accepted[kind] == 0 {
			t.Errorf("no valid %s found in the docs: are the examples still found?", kind)
		}
	}
	t.Logf("valid examples in the docs, accepted by both: %v", accepted)
}

// badStatus are objects whose status is out of range, with the field; the
// status subresource is written apart from the object, as the hub's is.
var badStatus = []struct {
	name, doc, resource, status, field string
}{
	{"run sequence", goodRun + "  {pipeline: retrain, cluster: edge-a}\n", "pipelinerun/run-1",
		`{"status":{"sequence":-1}}`, "status.sequence"},
	{"run phase", goodRun + "  {pipeline: retrain, cluster: edge-a}\n", "pipelinerun/run-1",
		`{"status":{"phase":"Sleeping"}}`, "status.phase"},
	{"cluster bandwidth", goodCluster + "  displayName: Lyon\n", "cluster/edge-a",
		`{"status":{"link":{"bandwidthBps":-5}}}`, "status.link.bandwidthBps"},
	{"deployment phase", deployment(goodModel, everyCluster), "md/fashion",
		`{"status":{"clusters":[{"cluster":"edge-a","phase":"Dreaming"}]}}`, "status.clusters[0].phase"},
}

// A status out of range is refused by the hub's validation and by the
// apiserver's status subresource, each naming the field.
func testStatus(t *testing.T, s *server) {
	ctx := t.Context()
	for _, tt := range badStatus {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.kubectl.Run(ctx, tt.doc, "apply", "-f", "-"); err != nil {
				t.Fatal(err)
			}
			defer s.kubectl.Run(ctx, "", "delete", tt.resource)
			var withStatus map[string]any
			if err := yaml.Unmarshal([]byte(tt.doc), &withStatus); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.status), &withStatus); err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(withStatus)
			if err != nil {
				t.Fatal(err)
			}
			if herr := hubVerdict(string(b)); herr == nil || !strings.Contains(herr.Error(), tt.field) {
				t.Errorf("hub: %v, want an error naming %s", herr, tt.field)
			}
			_, kerr := s.kubectl.Run(ctx, "", "patch", tt.resource, "--subresource=status", "--type=merge", "-p", tt.status)
			if kerr == nil || !strings.Contains(kerr.Error(), tt.field) {
				t.Errorf("kubectl patch --subresource=status: %v, want an error naming %s", kerr, tt.field)
			}
		})
	}
}

// kubectl get md -o wide shows a deployment's model, version and counts of
// clusters from its status, as the hub writes it.
func testColumns(t *testing.T, s *server) {
	ctx := t.Context()
	doc := deployment(goodModel, everyCluster)
	if _, err := s.kubectl.Run(ctx, doc, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	d := &v1alpha1.ModelDeployment{}
	d.Status.ResolvedVersion = "1.4.0"
	d.Status.Clusters = []v1alpha1.ClusterDeploymentStatus{
		{Cluster: "edge-a", Phase: v1alpha1.PhaseActive, ActiveVersion: "1.4.0"},
		{Cluster: "edge-b", Phase: v1alpha1.PhaseFetching},
		{Cluster: "edge-c", Phase: v1alpha1.PhaseActive, ActiveVersion: "1.4.0"},
	}
	d.Status.Count()
	status, err := json.Marshal(map[string]any{"status": d.Status})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.kubectl.Run(ctx, "", "patch", "md", "fashion", "--subresource=status", "--type=merge", "-p", string(status)); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"get", "md", "-o", "wide"}, {"get", "modeldeployments"}, {"get", "outpost"}} {
		out, err := s.kubectl.Run(ctx, "", args...)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		want := [][]string{{"NAME", "MODEL", "VERSION", "RESOLVED", "CLUSTERS", "READY", "AGE"}, {"fashion", "fashion", "^1.2", "1.4.0", "3", "2"}}
		if args[1] == "outpost" {
			want[1][0] = "modeldeployment.ml.outpost.dev/fashion"
		}
		if len(lines) != 2 {
			t.Fatalf("kubectl %s:\n%s", strings.Join(args, " "), out)
		}
		for i, w := range want {
			if got := strings.Fields(lines[i]); len(got) < len(w) || !equal(got[:len(w)], w) {
				t.Errorf("kubectl %s, line %d: %q, want %q first", strings.Join(args, " "), i+1, lines[i], strings.Join(w, " "))
			}
		}
	}
	// The short names of every kind resolve.
	for _, k := range v1alpha1.Kinds() {
		for _, short := range k.ShortNames {
			if _, err := s.kubectl.Run(ctx, "", "get", short); err != nil {
				t.Errorf("kubectl get %s (%s): %v", short, k.Kind, err)
			}
		}
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}
