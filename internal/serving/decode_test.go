package serving

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/onnx/interp"
)

// decodeModel has an input of every datatype the decoder supports.
var (
	decodeInputs = []interp.ValueInfo{
		{Name: "f", DType: interp.Float32, Shape: []int{-1, 2}},
		{Name: "i64", DType: interp.Int64, Shape: []int{2}},
		{Name: "i32", DType: interp.Int32, Shape: []int{-1}},
		{Name: "i8", DType: interp.Int8, Shape: []int{1}},
		{Name: "u8", DType: interp.Uint8, Shape: []int{2, 1}},
		{Name: "b", DType: interp.Bool, Shape: []int{}},
	}
	decodeOutputs = []interp.ValueInfo{{Name: "out", DType: interp.Float32, Shape: []int{-1}}}
)

// others is the JSON of every input but f, valid.
const others = `{"name":"i64","shape":[2],"datatype":"INT64","data":[-9007199254740993,7]},` +
	`{"name":"i32","shape":[3],"datatype":"INT32","data":[1,-2,2147483647]},` +
	`{"name":"i8","shape":[1],"datatype":"INT8","data":[-128]},` +
	`{"name":"u8","shape":[2,1],"datatype":"UINT8","data":[[0],[255]]},` +
	`{"name":"b","shape":[],"datatype":"BOOL","data":true}`

func request(f string) string {
	return `{"id":"x","inputs":[` + f + `,` + others + `]}`
}

func TestDecodeRequest(t *testing.T) {
	r, err := DecodeRequest([]byte(request(`{"name":"f","shape":[2,2],"datatype":"FP32","data":[[1.5,-2e-3],[3,4]]}`)), -1, decodeInputs, decodeOutputs, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(r.ID, r.Inputs["f"].F32, r.Inputs["f"].Shape, r.Inputs["i64"].I64, r.Inputs["i32"].I32, r.Inputs["i8"].I8,
		r.Inputs["u8"].U8, r.Inputs["u8"].Shape, r.Inputs["b"].B, r.Inputs["b"].Shape)
	if want := "x[1.5 -0.002 3 4] [2 2] [-9007199254740993 7] [1 -2 2147483647] [-128] [0 255] [2 1] [true] []"; got != want {
		t.Errorf("decoded %s\nwant    %s", got, want)
	}
	for name, tensor := range r.Inputs {
		if err := tensor.Validate(); err != nil {
			t.Errorf("input %s: %v", name, err)
		}
	}
}

func TestDecodeBinary(t *testing.T) {
	js := `{"inputs":[{"name":"f","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}},` + others +
		`],"outputs":[{"name":"out","parameters":{"binary_data":true}}]}`
	body := append([]byte(js), 0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0) // 1, -2
	r, err := DecodeRequest(body, int64(len(js)), decodeInputs, decodeOutputs, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(r.Inputs["f"].F32) != "[1 -2]" || len(r.Outputs) != 1 || !r.Outputs[0].Binary {
		t.Errorf("decoded %v, outputs %+v", r.Inputs["f"].F32, r.Outputs)
	}
	// Bytes nobody claims are refused.
	if _, err := DecodeRequest(append(body, 1), int64(len(js)), decodeInputs, decodeOutputs, Limits{}); err == nil ||
		!strings.Contains(err.Error(), "1 bytes of binary data follow the request that no input claims") {
		t.Errorf("trailing binary: %v", err)
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	f := func(s string) string { return request(s) }
	tests := []struct {
		name, body string
		jsonLen    int64
		want       string
	}{
		{"empty", ``, -1, "malformed request JSON"},
		{"not an object", `[1]`, -1, "malformed request JSON"},
		{"trailing data", f(`{"name":"f","shape":[1,2],"datatype":"FP32","data":[1,2]}`) + `{}`, -1, "data after the request object"},
		{"no inputs", `{"inputs":[]}`, -1, "no inputs"},
		{"missing input", `{"inputs":[{"name":"f","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`, -1, `missing input "i64" (INT64 [2])`},
		{"duplicate input", `{"inputs":[{"name":"b","shape":[],"datatype":"BOOL","data":true},{"name":"b","shape":[],"datatype":"BOOL","data":true}]}`, -1, `input "b" appears twice`},
		{"no shape", f(`{"name":"f","datatype":"FP32","data":[1,2]}`), -1, `input "f": no shape`},
		{"negative dim", f(`{"name":"f","shape":[-1,2],"datatype":"FP32","data":[1,2]}`), -1, "negative dimension"},
		{"huge shape", f(`{"name":"f","shape":[4611686018427387904,2],"datatype":"FP32","data":[1,2]}`), -1, "more than"},
		{"overflowing shape", f(`{"name":"f","shape":[65536,2],"datatype":"FP32","data":[1,2]}`), -1, "has 131072 elements but data has 2"},
		{"no data", f(`{"name":"f","shape":[1,2],"datatype":"FP32"}`), -1, "no data and no binary_data_size"},
		{"null data", f(`{"name":"f","shape":[1,2],"datatype":"FP32","data":null}`), -1, "no data"},
		{"nested too deep", f(`{"name":"f","shape":[1,2],"datatype":"FP32","data":[[[1,2]]]}`), -1, "nested deeper"},
		{"bool for float", f(`{"name":"f","shape":[1,2],"datatype":"FP32","data":[true,2]}`), -1, `"true" is not a FP32`},
		{"NaN", f(`{"name":"f","shape":[1,2],"datatype":"FP32","data":[NaN,2]}`), -1, "malformed request JSON"},
		{"float out of range", f(`{"name":"f","shape":[1,2],"datatype":"FP32","data":[1e39,2]}`), -1, `"1e39" is not an FP32 number`},
		{"fraction for int", `{"inputs":[{"name":"i64","shape":[2],"datatype":"INT64","data":[1.5,2]}]}`, -1, `"1.5" is not an INT64`},
		{"uint8 out of range", `{"inputs":[{"name":"u8","shape":[2,1],"datatype":"UINT8","data":[256,1]}]}`, -1, `"256" is not a UINT8`},
		{"int8 out of range", `{"inputs":[{"name":"i8","shape":[1],"datatype":"INT8","data":[-129]}]}`, -1, `"-129" is not an INT8`},
		{"bool as number", `{"inputs":[{"name":"b","shape":[],"datatype":"BOOL","data":1}]}`, -1, `"1" is not a BOOL`},
		{"object element", f(`{"name":"f","shape":[1,2],"datatype":"FP32","data":[{},2]}`), -1, "malformed data"},
		{"bad binary_data_size", f(`{"name":"f","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":"8"}}`), -1, "binary_data_size must be a non-negative integer"},
		{"binary beyond body", f(`{"name":"f","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}}`), -1, "only 0 bytes of binary data remain"},
		{"data and binary", f(`{"name":"f","shape":[1,2],"datatype":"FP32","data":[1,2],"parameters":{"binary_data_size":8}}`), -1, "both data and binary_data_size"},
		{"header beyond body", `{}`, 99, "exceeds the body's 2 bytes"},
		{"bad binary_data", f(`{"name":"f","shape":[1,2],"datatype":"FP32","data":[1,2]}`)[:len(f(`{"name":"f","shape":[1,2],"datatype":"FP32","data":[1,2]}`))-1] +
			`,"outputs":[{"name":"out","parameters":{"binary_data":"yes"}}]}`, -1, `output "out": parameter binary_data must be true or false`},
		{"duplicate output", f(`{"name":"f","shape":[1,2],"datatype":"FP32","data":[1,2]}`)[:len(f(`{"name":"f","shape":[1,2],"datatype":"FP32","data":[1,2]}`))-1] +
			`,"outputs":[{"name":"out"},{"name":"out"}]}`, -1, `output "out" requested twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRequest([]byte(tt.body), tt.jsonLen, decodeInputs, decodeOutputs, Limits{})
			if _, ok := err.(*RequestError); !ok || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DecodeRequest = %v, want a RequestError containing %q", err, tt.want)
			}
		})
	}
}

// TestDecodeNesting: data is flat, or nested exactly as the shape says:
// each array at depth d holds shape[d] elements, arrays above the last
// dimension and numbers in it.
func TestDecodeNesting(t *testing.T) {
	anyShape := []interp.ValueInfo{{Name: "x", DType: interp.Float32}}
	tests := []struct {
		name, shape, data string
		want              string // the decoded elements, or the error
		wantErr           bool
	}{
		{name: "flat", shape: "[1,4]", data: "[1,2,3,4]", want: "[1 2 3 4]"},
		{name: "nested as the shape", shape: "[1,4]", data: "[[1,2,3,4]]", want: "[1 2 3 4]"},
		{name: "nested 2x2", shape: "[2,2]", data: "[[1,2],[3,4]]", want: "[1 2 3 4]"},
		{name: "nested three deep", shape: "[2,1,2]", data: "[[[1,2]],[[3,4]]]", want: "[1 2 3 4]"},
		{name: "flat, empty", shape: "[0,2]", data: "[]", want: "[]"},
		{name: "nested, empty rows", shape: "[2,0]", data: "[[],[]]", want: "[]"},
		{name: "scalar", shape: "[]", data: "5", want: "[5]"},
		{name: "scalar in an array", shape: "[]", data: "[5]", want: "[5]"},
		{name: "2x2 rows for 1x4", shape: "[1,4]", data: "[[1,2],[3,4]]", wantErr: true,
			want: `input "x": nested data must follow shape [1,4], or be flat: data[0] has 2 elements, want 4`},
		{name: "ragged rows", shape: "[2,2]", data: "[[1,2,3],[4]]", wantErr: true,
			want: `data[0] has 3 elements, want 2`},
		{name: "rows then numbers", shape: "[2,2]", data: "[[1,2],3,4]", wantErr: true,
			want: `data[1] is a number, want an array of 2`},
		{name: "numbers then a row", shape: "[2,2]", data: "[1,2,[3,4]]", wantErr: true,
			want: `flat data holds an array at data[2]`},
		{name: "nested less deep than the shape", shape: "[2,1,2]", data: "[[1,2],[3,4]]", wantErr: true,
			want: `data[0][0] is a number, want an array of 2`},
		{name: "too few rows", shape: "[3,1]", data: "[[1],[2]]", wantErr: true,
			want: `data has 2 elements, want 3`},
		{name: "too many rows", shape: "[1,2]", data: "[[1,2],[3,4]]", wantErr: true,
			want: `has 2 elements but data has more`},
		{name: "nested deeper than the shape", shape: "[1,2]", data: "[[[1,2]]]", wantErr: true, want: "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"inputs":[{"name":"x","shape":` + tt.shape + `,"datatype":"FP32","data":` + tt.data + `}]}`
			r, err := DecodeRequest([]byte(body), -1, anyShape, decodeOutputs, Limits{})
			if tt.wantErr {
				if _, ok := err.(*RequestError); !ok || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("DecodeRequest = %v, want a RequestError containing %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(r.Inputs["x"].F32); got != tt.want {
				t.Errorf("decoded %s, want %s", got, tt.want)
			}
		})
	}
}

func TestDecodeLimits(t *testing.T) {
	body := request(`{"name":"f","shape":[1,2],"datatype":"FP32","data":[1,2]}`)
	if _, err := DecodeRequest([]byte(body), -1, decodeInputs, decodeOutputs, Limits{MaxInputs: 2}); err == nil || !strings.Contains(err.Error(), "at most 2 each") {
		t.Errorf("MaxInputs: %v", err)
	}
	if _, err := DecodeRequest([]byte(body), -1, decodeInputs, decodeOutputs, Limits{MaxElements: 2}); err == nil || !strings.Contains(err.Error(), "more than 2 elements") {
		t.Errorf("MaxElements: %v", err)
	}
	if _, err := DecodeRequest([]byte(body), -1, decodeInputs, decodeOutputs, Limits{MaxDims: 1}); err == nil || !strings.Contains(err.Error(), "at most 1") {
		t.Errorf("MaxDims: %v", err)
	}
}

// FuzzDecodeRequest checks that the decoder never panics and that whatever
// it accepts is consistent: one tensor per model input, of the model's
// datatype, a shape that fits, and exactly as many elements as its shape.
func FuzzDecodeRequest(f *testing.F) {
	good := request(`{"name":"f","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}`)
	f.Add([]byte(good), int64(-1))
	js := `{"inputs":[{"name":"f","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}},` + others + `]}`
	f.Add(append([]byte(js), 0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0), int64(len(js)))
	f.Add([]byte(`{"inputs":[{"name":"f","shape":[0,2],"datatype":"FP32","data":[]}]}`), int64(-1))
	f.Add([]byte(`{"inputs":[{"name":"b","shape":[],"datatype":"BOOL","data":[false]}]}`), int64(-1))
	f.Add([]byte(`{"inputs":[{"name":"i64","shape":[2],"datatype":"INT64","data":[[1],[2]]}]}`), int64(-1))
	f.Add([]byte(request(`{"name":"f","shape":[2,2],"datatype":"FP32","data":[[1,2,3],[4]]}`)), int64(-1))
	f.Add([]byte(request(`{"name":"f","shape":[2,2],"datatype":"FP32","data":[1,2,[3,4]]}`)), int64(-1))
	f.Add([]byte(request(`{"name":"f","shape":[2,2],"datatype":"FP32","data":[[1,2],3,4]}`)), int64(-1))
	// Whole requests but for a shape of f that the model does not take.
	for _, f0 := range []string{`"shape":[1,3],"data":[1,2,3]`, `"shape":[4],"data":[1,2,3,4]`, `"shape":[2,2,1],"data":[1,2,3,4]`, `"shape":[],"data":1`} {
		f.Add([]byte(request(`{"name":"f","datatype":"FP32",`+f0+`}`)), int64(-1))
	}
	f.Fuzz(func(t *testing.T, body []byte, jsonLen int64) {
		r, err := DecodeRequest(body, jsonLen, decodeInputs, decodeOutputs, Limits{MaxElements: 1 << 16})
		if err != nil {
			if _, ok := err.(*RequestError); !ok {
				t.Fatalf("error %v is not a RequestError", err)
			}
			return
		}
		checkAccepted(t, r)
	})
}

// acceptedShapes says, written out here rather than derived from
// decodeInputs by the decoder's rule, which shapes each input may be
// accepted with: the model's rank, and its fixed dimensions (f and i32 have
// one dynamic dimension each).
var acceptedShapes = map[string]func(shape []int) bool{
	"f":   func(s []int) bool { return len(s) == 2 && s[1] == 2 },
	"i64": func(s []int) bool { return slices.Equal(s, []int{2}) },
	"i32": func(s []int) bool { return len(s) == 1 },
	"i8":  func(s []int) bool { return slices.Equal(s, []int{1}) },
	"u8":  func(s []int) bool { return slices.Equal(s, []int{2, 1}) },
	"b":   func(s []int) bool { return len(s) == 0 },
}

// checkAccepted fails t unless r holds exactly the inputs of decodeInputs,
// each of its type, of a shape acceptedShapes allows, and valid.
func checkAccepted(t *testing.T, r *InferRequest) {
	t.Helper()
	if len(r.Inputs) != len(decodeInputs) {
		t.Fatalf("accepted %d inputs, the model has %d", len(r.Inputs), len(decodeInputs))
	}
	for _, vi := range decodeInputs {
		x := r.Inputs[vi.Name]
		fits, ok := acceptedShapes[vi.Name]
		if !ok {
			t.Fatalf("acceptedShapes has no rule for input %s", vi.Name)
		}
		if x == nil || x.DType != vi.DType || !fits(x.Shape) {
			t.Fatalf("input %s accepted as %+v", vi.Name, x)
		}
		if err := x.Validate(); err != nil {
			t.Fatalf("input %s: %v", vi.Name, err)
		}
	}
}
