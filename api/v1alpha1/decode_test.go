package v1alpha1

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

const mdYAML = `apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: resnet
  labels: {team: vision}
spec:
  model: {name: resnet50, version: "^1.2"}
  clusterSelectors:
  - matchLabels: {region: eu}
  - matchExpressions: [{key: tier, operator: In, values: [edge]}]
  serving: {runtime: onnxruntime, port: 8080}
  allowDowngrade: true
`

const clusterYAML = `apiVersion: ml.outpost.dev/v1alpha1
kind: Cluster
metadata:
  name: edge-1
  labels: {region: eu}
spec:
  displayName: Edge one
  capacity: {cpu: "4", memory: 8Gi, accelerators: [{type: nvidia.com/gpu, count: 1}]}
`

func TestDecode(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantKinds []string
		wantErr   string
	}{
		{name: "yaml single", in: mdYAML, wantKinds: []string{KindModelDeployment}},
		{name: "yaml multi", in: "---\n" + clusterYAML + "---\n" + mdYAML + "---\n", wantKinds: []string{KindCluster, KindModelDeployment}},
		{name: "json", in: `{"apiVersion":"ml.outpost.dev/v1alpha1","kind":"Cluster","metadata":{"name":"a"}}`, wantKinds: []string{KindCluster}},
		{name: "json concatenated", in: `{"apiVersion":"ml.outpost.dev/v1alpha1","kind":"Cluster","metadata":{"name":"a"}} {"apiVersion":"ml.outpost.dev/v1alpha1","kind":"Cluster","metadata":{"name":"b"}}`, wantKinds: []string{KindCluster, KindCluster}},
		{name: "list", in: `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"ml.outpost.dev/v1alpha1","kind":"Cluster","metadata":{"name":"a"}}]}`, wantKinds: []string{KindCluster}},
		{name: "typed list items without kind", in: `{"apiVersion":"ml.outpost.dev/v1alpha1","kind":"ClusterList","metadata":{"resourceVersion":"3"},"items":[{"metadata":{"name":"a"}}]}`, wantKinds: []string{KindCluster}},
		{name: "empty", in: "\n---\n# comment\n", wantKinds: nil},
		{name: "unknown field", in: strings.Replace(mdYAML, "allowDowngrade: true", "allowDowngrade: true\n  colour: red", 1), wantErr: `unknown field "spec.colour"`},
		{name: "unknown nested field", in: strings.Replace(mdYAML, "runtime: onnxruntime", "runtime: onnxruntime, gpu: 1", 1), wantErr: `unknown field "spec.serving.gpu"`},
		{name: "wrong case field", in: strings.Replace(mdYAML, "allowDowngrade", "AllowDowngrade", 1), wantErr: `unknown field "spec.AllowDowngrade"`},
		{name: "duplicate key", in: mdYAML + "metadata: {name: x}\n", wantErr: "already set"},
		{name: "unknown kind", in: "apiVersion: ml.outpost.dev/v1alpha1\nkind: Widget\nmetadata: {name: x}\n", wantErr: `unknown kind "Widget"`},
		{name: "unknown apiVersion", in: "apiVersion: apps/v1\nkind: Deployment\n", wantErr: `unknown apiVersion "apps/v1"`},
		{name: "missing kind", in: "apiVersion: ml.outpost.dev/v1alpha1\nmetadata: {name: x}\n", wantErr: "kind is required"},
		{name: "missing apiVersion", in: "kind: Cluster\nmetadata: {name: x}\n", wantErr: "apiVersion is required"},
		{name: "malformed yaml", in: "apiVersion: [unclosed\n", wantErr: "malformed YAML"},
		{name: "malformed json", in: `{"apiVersion": `, wantErr: "malformed JSON"},
		{name: "not an object", in: "- a\n- b\n", wantErr: "expected an object"},
		{name: "wrong type", in: strings.Replace(mdYAML, "port: 8080", "port: eighty", 1), wantErr: "spec.serving.port"},
		{name: "error names document", in: clusterYAML + "---\nkind: Cluster\n", wantErr: "document 2: apiVersion is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Decode([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Decode error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			var kinds []string
			for _, o := range objs {
				kinds = append(kinds, o.GetObjectKind().GroupVersionKind().Kind)
			}
			if strings.Join(kinds, ",") != strings.Join(tt.wantKinds, ",") {
				t.Fatalf("kinds = %v, want %v", kinds, tt.wantKinds)
			}
		})
	}
}

func TestDecodeFields(t *testing.T) {
	objs, err := Decode([]byte(mdYAML))
	if err != nil {
		t.Fatal(err)
	}
	md := objs[0].(*ModelDeployment)
	if md.Name != "resnet" || md.Spec.Model.Version != "^1.2" || md.Spec.Serving.Runtime != RuntimeONNXRuntime ||
		*md.Spec.Serving.Port != 8080 || !md.Spec.AllowDowngrade || len(md.Spec.ClusterSelectors) != 2 ||
		md.Spec.ClusterSelectors[1].MatchExpressions[0].Operator != metav1.LabelSelectorOpIn {
		t.Fatalf("decoded %+v", md)
	}
	objs, err = Decode([]byte(clusterYAML))
	if err != nil {
		t.Fatal(err)
	}
	c := objs[0].(*Cluster)
	if c.Spec.Capacity.Memory.String() != "8Gi" || c.Spec.Capacity.Accelerators[0].Count != 1 {
		t.Fatalf("decoded %+v", c)
	}
}

func TestDecodeTooLarge(t *testing.T) {
	_, err := Decode(make([]byte, MaxDecodeBytes+1))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestValidate(t *testing.T) {
	base := func() *ModelDeployment {
		objs, err := Decode([]byte(mdYAML))
		if err != nil {
			t.Fatal(err)
		}
		return objs[0].(*ModelDeployment)
	}
	tests := []struct {
		name    string
		mutate  func(*ModelDeployment)
		wantErr string
	}{
		{name: "valid", mutate: func(*ModelDeployment) {}},
		{name: "bad version", mutate: func(d *ModelDeployment) { d.Spec.Model.Version = "1.x.y" },
			wantErr: `spec.model.version: Invalid value: "1.x.y": not a semver version or range`},
		{name: "missing version", mutate: func(d *ModelDeployment) { d.Spec.Model.Version = "" }, wantErr: "spec.model.version: Required value"},
		{name: "bad model name", mutate: func(d *ModelDeployment) { d.Spec.Model.Name = "Res Net" }, wantErr: "spec.model.name: Invalid value"},
		{name: "an edge model", mutate: func(d *ModelDeployment) { d.Spec.Model.Name = "edge/ship-1/resnet" },
			wantErr: `spec.model.name: Invalid value: "edge/ship-1/resnet": a model produced at the edge is deployed once promoted`},
		{name: "missing name", mutate: func(d *ModelDeployment) { d.Name = "" }, wantErr: "metadata.name: Required value"},
		{name: "bad name", mutate: func(d *ModelDeployment) { d.Name = "Bad_Name" }, wantErr: "metadata.name: Invalid value"},
		{name: "namespaced", mutate: func(d *ModelDeployment) { d.Namespace = "default" }, wantErr: "metadata.namespace: Forbidden"},
		{name: "bad label", mutate: func(d *ModelDeployment) { d.Labels = map[string]string{"a b": "c"} }, wantErr: "metadata.labels: Invalid value"},
		{name: "bad selector operator", mutate: func(d *ModelDeployment) {
			d.Spec.ClusterSelectors[1].MatchExpressions[0].Operator = "Near"
		}, wantErr: "spec.clusterSelectors[1].matchExpressions[0].operator"},
		{name: "bad selector value", mutate: func(d *ModelDeployment) {
			d.Spec.ClusterSelectors[0].MatchLabels = map[string]string{"region": "not valid!"}
		}, wantErr: "spec.clusterSelectors[0].matchLabels"},
		{name: "bad runtime", mutate: func(d *ModelDeployment) { d.Spec.Serving.Runtime = "tensorrt" }, wantErr: `spec.serving.runtime: Unsupported value: "tensorrt"`},
		{name: "bad port", mutate: func(d *ModelDeployment) { p := int32(70000); d.Spec.Serving.Port = &p }, wantErr: "spec.serving.port"},
		{name: "monitoring defaults", mutate: func(d *ModelDeployment) { d.Spec.Monitoring = &Monitoring{} }},
		{name: "monitoring set", mutate: func(d *ModelDeployment) {
			d.Spec.Monitoring = &Monitoring{WindowSamples: 500, Alpha: "0.05", Correction: CorrectionBenjaminiHochberg, PSIThreshold: "0.2", RaiseAfter: 2}
		}},
		{name: "monitoring alpha", mutate: func(d *ModelDeployment) { d.Spec.Monitoring = &Monitoring{Alpha: "1.5"} }, wantErr: "spec.monitoring.alpha"},
		{name: "monitoring window", mutate: func(d *ModelDeployment) { d.Spec.Monitoring = &Monitoring{WindowSamples: 3} }, wantErr: "spec.monitoring.windowSamples"},
		{name: "monitoring feedback", mutate: func(d *ModelDeployment) { d.Spec.Monitoring = &Monitoring{FeedbackSamples: -1} }, wantErr: "spec.monitoring.feedbackSamples"},
		{name: "monitoring correction", mutate: func(d *ModelDeployment) { d.Spec.Monitoring = &Monitoring{Correction: "Holm"} }, wantErr: `spec.monitoring.correction: Unsupported value: "Holm"`},
		{name: "monitoring psi", mutate: func(d *ModelDeployment) { d.Spec.Monitoring = &Monitoring{PSIThreshold: "high"} }, wantErr: "spec.monitoring.psiThreshold"},
		{name: "bad strategy", mutate: func(d *ModelDeployment) { d.Spec.Rollout.Strategy = "BlueGreen" }, wantErr: "spec.rollout.strategy"},
		{name: "variant policy", mutate: func(d *ModelDeployment) {
			d.Spec.VariantPolicy = &VariantPolicy{Allowed: []string{"original", "int8", "fp16.v2"}, MaxMemoryPercent: 100,
				MaxFetchTime: &metav1.Duration{Duration: 10 * time.Minute}, Prefer: PreferSmallest}
		}},
		{name: "variant allowed", mutate: func(d *ModelDeployment) { d.Spec.VariantPolicy = &VariantPolicy{Allowed: []string{"int8", "INT4"}} },
			wantErr: `spec.variantPolicy.allowed[1]: Invalid value: "INT4"`},
		{name: "variant allowed twice", mutate: func(d *ModelDeployment) { d.Spec.VariantPolicy = &VariantPolicy{Allowed: []string{"int8", "int8"}} },
			wantErr: `spec.variantPolicy.allowed[1]: Duplicate value: "int8"`},
		{name: "variant memory", mutate: func(d *ModelDeployment) { d.Spec.VariantPolicy = &VariantPolicy{MaxMemoryPercent: 101} },
			wantErr: "spec.variantPolicy.maxMemoryPercent: Invalid value: 101"},
		{name: "variant fetch time", mutate: func(d *ModelDeployment) {
			d.Spec.VariantPolicy = &VariantPolicy{MaxFetchTime: &metav1.Duration{Duration: -time.Second}}
		}, wantErr: "spec.variantPolicy.maxFetchTime: Invalid value"},
		{name: "variant prefer", mutate: func(d *ModelDeployment) { d.Spec.VariantPolicy = &VariantPolicy{Prefer: "Fastest"} },
			wantErr: `spec.variantPolicy.prefer: Unsupported value: "Fastest"`},
		{name: "drift status", mutate: func(d *ModelDeployment) {
			d.Status.Clusters = []ClusterDeploymentStatus{{Cluster: "a", Drift: &DriftStatus{Version: "1.0.0", State: DriftStateNoDrift}}}
		}},
		{name: "bad drift state", mutate: func(d *ModelDeployment) {
			d.Status.Clusters = []ClusterDeploymentStatus{{Cluster: "a", Drift: &DriftStatus{Version: "1.0.0", State: "Wobbly"}}}
		}, wantErr: `status.clusters[0].drift.state: Unsupported value: "Wobbly"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := base()
			tt.mutate(d)
			err := d.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var inv *InvalidError
			if !errors.As(err, &inv) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want InvalidError containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidateCluster(t *testing.T) {
	objs, err := Decode([]byte(clusterYAML))
	if err != nil {
		t.Fatal(err)
	}
	c := objs[0].(*Cluster)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c.Status.Link.State = "Flaky"
	c.Spec.Capacity.Accelerators = append(c.Spec.Capacity.Accelerators, Accelerator{Type: "nvidia.com/gpu"})
	err = c.Validate()
	for _, want := range []string{"status.link.state: Unsupported value", "spec.capacity.accelerators[1].type: Duplicate value"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to contain %q", err, want)
		}
	}
}

func TestScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{KindCluster, KindClusterList, KindModelDeployment, KindModelDeploymentList} {
		if !s.Recognizes(SchemeGroupVersion.WithKind(k)) {
			t.Errorf("scheme does not recognize %s", k)
		}
	}
	md := &ModelDeployment{Spec: ModelDeploymentSpec{ClusterSelectors: []metav1.LabelSelector{{}}}}
	cp := md.DeepCopyObject().(*ModelDeployment)
	cp.Spec.ClusterSelectors[0].MatchLabels = map[string]string{"a": "b"}
	if md.Spec.ClusterSelectors[0].MatchLabels != nil {
		t.Fatal("DeepCopy shares memory")
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{mdYAML, clusterYAML, clusterYAML + "---\n" + mdYAML, goodPipeline,
		"apiVersion: ml.outpost.dev/v1alpha1\nkind: PipelineRun\nmetadata: {name: r}\nspec: {pipeline: p, cluster: c}\n",
		`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"ml.outpost.dev/v1alpha1","kind":"Cluster","metadata":{"name":"a"}}]}`,
		"a: &a [*a, *a]\n", "---\n---\n", "{", "kind: Cluster\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode(data)
		if err != nil {
			return
		}
		for _, o := range objs {
			_ = o.Validate()
			b, err := json.Marshal(o)
			if err != nil {
				t.Fatalf("marshal decoded object: %v", err)
			}
			again, err := Decode(b)
			if err != nil {
				t.Fatalf("re-decoding %s: %v", b, err)
			}
			if len(again) != 1 || again[0].GetName() != o.GetName() || KindOf(again[0]) != KindOf(o) {
				t.Fatalf("round trip changed object: %s", b)
			}
		}
	})
}
