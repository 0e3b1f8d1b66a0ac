package engine_test

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

func TestCheckSupport(t *testing.T) {
	otherDomain := func(t *testing.T, domain string) []byte {
		mp := &onnxpb.ModelProto{}
		if err := proto.Unmarshal(gemmRelu(t, "Relu"), mp); err != nil {
			t.Fatal(err)
		}
		mp.Graph.Node[1].Domain = proto.String(domain)
		mp.OpsetImport = append(mp.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String(domain), Version: proto.Int64(1)})
		b, err := proto.Marshal(mp)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name      string
		data      func(t *testing.T) []byte
		ops       []string
		runtimes  []string
		missing   []string
		goError   string
		wantError string
	}{
		{name: "every operator implemented", data: func(t *testing.T) []byte { return gemmRelu(t, "Relu") },
			ops: []string{"Gemm", "Relu"}, runtimes: []string{"go", "onnxruntime"}},
		{name: "an operator the Go runtime lacks", data: func(t *testing.T) []byte { return gemmRelu(t, "Det") },
			ops: []string{"Det", "Gemm"}, runtimes: []string{"onnxruntime"}, missing: []string{"Det"}, goError: "the Go runtime lacks Det"},
		{name: "ONNX Runtime's contrib domain", data: func(t *testing.T) []byte { return otherDomain(t, "com.microsoft") },
			ops: []string{"Gemm", "com.microsoft.Relu"}, runtimes: []string{"onnxruntime"}, missing: []string{"com.microsoft.Relu"}, goError: "lacks com.microsoft.Relu"},
		{name: "a custom domain", data: func(t *testing.T) []byte { return otherDomain(t, "com.example") },
			ops: []string{"Gemm", "com.example.Relu"}, runtimes: []string{}, missing: []string{"com.example.Relu"}, goError: "lacks com.example.Relu"},
		{name: "operators known, attributes not", data: func(t *testing.T) []byte {
			mp := &onnxpb.ModelProto{}
			proto.Unmarshal(gemmRelu(t, "Relu"), mp)
			mp.Graph.Node[0].Input = []string{"x", "nowhere"}
			b, _ := proto.Marshal(mp)
			return b
		}, ops: []string{"Gemm", "Relu"}, runtimes: []string{"onnxruntime"}, goError: "nowhere"},
		{name: "not ONNX", data: func(*testing.T) []byte { return []byte("\xff\xff\xff") }, wantError: "decoding ONNX model"},
		{name: "no graph", data: func(*testing.T) []byte { return nil }, wantError: "no graph"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := engine.CheckSupport(tt.data(t))
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("CheckSupport = %+v, %v; want an error with %q", s, err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.Operators, tt.ops) || !reflect.DeepEqual(s.Runtimes, tt.runtimes) ||
				!reflect.DeepEqual(s.GoMissing, tt.missing) || s.Opset != 13 {
				t.Errorf("CheckSupport = %+v; want operators %v, runtimes %v, missing %v, opset 13", s, tt.ops, tt.runtimes, tt.missing)
			}
			if (tt.goError == "") != (s.GoError == "") || !strings.Contains(s.GoError, tt.goError) {
				t.Errorf("GoError %q, want one with %q", s.GoError, tt.goError)
			}
		})
	}
}

// CheckSupport reads model files from registries and folders: whatever the
// bytes, it answers or errs, never panics, and its answer is consistent.
func FuzzCheckSupport(f *testing.F) {
	f.Add(gemmRelu(f, "Relu"))
	f.Add(gemmRelu(f, "Det"))
	f.Add([]byte{})
	f.Add([]byte("\x3a\x02\x0a\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := engine.CheckSupport(data)
		if err != nil {
			return
		}
		goOK := len(s.Runtimes) > 0 && s.Runtimes[0] == engine.RuntimeGo
		if goOK != (s.GoError == "") || (len(s.GoMissing) > 0 && goOK) {
			t.Fatalf("inconsistent %+v", s)
		}
	})
}
