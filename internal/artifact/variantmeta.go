package artifact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Variant annotations: what a variant manifest is and what it costs. Each is
// set on the variant's manifest, so that `oras discover` shows them.
const (
	// AnnotationVariant is the variant's name (int8, fp16, pruned, ...).
	AnnotationVariant = "ml.outpost.dev/variant"
	// AnnotationVariantMethod names the method that produced it.
	AnnotationVariantMethod = "ml.outpost.dev/variant.method"
	// AnnotationVariantParams holds the method's parameters, a JSON object of strings.
	AnnotationVariantParams = "ml.outpost.dev/variant.params"
	// AnnotationVariantSize is the total size of its files, in bytes.
	AnnotationVariantSize = "ml.outpost.dev/variant.size"
	// AnnotationVariantAccuracy is its accuracy on the evaluation set, 0 to 1.
	AnnotationVariantAccuracy = "ml.outpost.dev/variant.accuracy"
	// AnnotationVariantPeakMemory is its peak memory while serving, in bytes.
	AnnotationVariantPeakMemory = "ml.outpost.dev/variant.peak-memory"
	// AnnotationVariantOperators lists the operators it uses, comma-separated.
	AnnotationVariantOperators = "ml.outpost.dev/variant.operators"
	// AnnotationVariantLatencyPrefix prefixes one annotation per measured
	// latency: ml.outpost.dev/variant.latency.<runtime>.batch<N>-ms.
	AnnotationVariantLatencyPrefix = "ml.outpost.dev/variant.latency."
)

// Latency annotation keys, one per runtime and batch size.
const (
	latencyGo1   = AnnotationVariantLatencyPrefix + "go.batch1-ms"
	latencyGo32  = AnnotationVariantLatencyPrefix + "go.batch32-ms"
	latencyORT1  = AnnotationVariantLatencyPrefix + "onnxruntime.batch1-ms"
	latencyORT32 = AnnotationVariantLatencyPrefix + "onnxruntime.batch32-ms"
)

// OriginalVariant is the name the variant policy gives the full model; no
// variant may take it.
const OriginalVariant = "original"

// Limits of variant metadata.
const (
	maxVariantParams    = 64
	maxVariantOperators = 1024
	maxVariantValue     = 1024
)

var (
	variantNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)
	methodRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$`)
	operatorRE    = regexp.MustCompile(`^[A-Za-z0-9_.]{1,128}(:[A-Za-z0-9_]{1,128})?$`)
)

// VariantLatency is a variant's measured inference latency, in milliseconds
// per batch, by runtime and batch size; zero is not measured.
type VariantLatency struct {
	GoBatch1Ms           float64 `json:"goBatch1Ms,omitempty"`
	GoBatch32Ms          float64 `json:"goBatch32Ms,omitempty"`
	ONNXRuntimeBatch1Ms  float64 `json:"onnxruntimeBatch1Ms,omitempty"`
	ONNXRuntimeBatch32Ms float64 `json:"onnxruntimeBatch32Ms,omitempty"`
}

// VariantMeta is what a variant of a model version is and what it costs. It
// is recorded in the variant manifest's annotations (Annotations) and read
// back from them (VariantMetaFromAnnotations); the compression methods that
// make variants fill it, and `outpost model push --variant-meta` reads it
// from a JSON file (ParseVariantMeta).
type VariantMeta struct {
	// Name is the variant's name: int8, fp16, pruned, distilled, tflite, or
	// another lowercase name (letters, digits, '.', '-'; not "original").
	Name string `json:"name"`
	// Method names the method that produced it, such as
	// "dynamic-quantization" (optional).
	Method string `json:"method,omitempty"`
	// Params are the method's parameters (optional).
	Params map[string]string `json:"params,omitempty"`
	// SizeBytes is the total size of the variant's files; push sets it.
	SizeBytes int64 `json:"sizeBytes,omitempty"`
	// Accuracy is the accuracy on the evaluation set, 0 to 1; nil is not measured.
	Accuracy *float64 `json:"accuracy,omitempty"`
	// Latency is the measured inference latency.
	Latency VariantLatency `json:"latency,omitzero"`
	// PeakMemoryBytes is the peak memory while serving; 0 is not measured.
	PeakMemoryBytes int64 `json:"peakMemoryBytes,omitempty"`
	// Operators lists the operators the variant's graph uses, sorted
	// ("MatMulInteger", "com.microsoft:QGemm").
	Operators []string `json:"operators,omitempty"`
}

// Validate checks the metadata, naming the field at fault.
func (m *VariantMeta) Validate() error {
	if err := ValidateVariantName(m.Name); err != nil {
		return err
	}
	if m.Method != "" && !methodRE.MatchString(m.Method) {
		return fmt.Errorf("variant method %q: use letters, digits, '.', '_', '/' and '-', at most 128", m.Method)
	}
	if len(m.Params) > maxVariantParams {
		return fmt.Errorf("variant params: %d, at most %d", len(m.Params), maxVariantParams)
	}
	for k, v := range m.Params {
		if !metricKeyRE.MatchString(k) {
			return fmt.Errorf("variant params: invalid key %q: use letters, digits, '.', '_' and '-'", k)
		}
		if len(v) > maxVariantValue || strings.ContainsFunc(v, isControl) {
			return fmt.Errorf("variant params: value of %q: at most %d bytes, no control characters", k, maxVariantValue)
		}
	}
	if m.SizeBytes < 0 {
		return fmt.Errorf("variant sizeBytes %d: must not be negative", m.SizeBytes)
	}
	if a := m.Accuracy; a != nil && !(*a >= 0 && *a <= 1) {
		return fmt.Errorf("variant accuracy %v: want a number from 0 to 1", *a)
	}
	for _, l := range []struct {
		field string
		v     float64
	}{{"goBatch1Ms", m.Latency.GoBatch1Ms}, {"goBatch32Ms", m.Latency.GoBatch32Ms},
		{"onnxruntimeBatch1Ms", m.Latency.ONNXRuntimeBatch1Ms}, {"onnxruntimeBatch32Ms", m.Latency.ONNXRuntimeBatch32Ms}} {
		if !(l.v >= 0) || math.IsInf(l.v, 0) {
			return fmt.Errorf("variant latency.%s %v: want a non-negative number of milliseconds", l.field, l.v)
		}
	}
	if m.PeakMemoryBytes < 0 {
		return fmt.Errorf("variant peakMemoryBytes %d: must not be negative", m.PeakMemoryBytes)
	}
	if len(m.Operators) > maxVariantOperators {
		return fmt.Errorf("variant operators: %d, at most %d", len(m.Operators), maxVariantOperators)
	}
	for i, op := range m.Operators {
		if !operatorRE.MatchString(op) {
			return fmt.Errorf("variant operators[%d] %q: want OP or DOMAIN:OP", i, op)
		}
		if i > 0 && m.Operators[i-1] >= op {
			return fmt.Errorf("variant operators: %q after %q: list each once, sorted", op, m.Operators[i-1])
		}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// ValidateVariantName checks a variant name.
func ValidateVariantName(name string) error {
	if !variantNameRE.MatchString(name) {
		return fmt.Errorf("variant name %q: use lowercase letters, digits, '.' and '-', such as int8 or fp16", name)
	}
	if name == OriginalVariant {
		return fmt.Errorf("variant name %q names the full model: pick another", name)
	}
	return nil
}

// ParseVariantMeta decodes and validates variant metadata from JSON (the
// file `outpost model push --variant-meta` reads): unknown fields and
// trailing data are refused.
func ParseVariantMeta(b []byte) (VariantMeta, error) {
	if len(b) > MaxManifestBytes {
		return VariantMeta{}, fmt.Errorf("variant metadata is %d bytes, above the %d byte limit", len(b), MaxManifestBytes)
	}
	var m VariantMeta
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return VariantMeta{}, fmt.Errorf("decode variant metadata: %w", err)
	}
	if dec.More() {
		return VariantMeta{}, errors.New("decode variant metadata: trailing data")
	}
	if err := m.Validate(); err != nil {
		return VariantMeta{}, err
	}
	return m, nil
}

// Annotations returns the manifest annotations that record m.
func (m *VariantMeta) Annotations() map[string]string {
	ann := map[string]string{AnnotationVariant: m.Name, AnnotationVariantSize: strconv.FormatInt(m.SizeBytes, 10)}
	if m.Method != "" {
		ann[AnnotationVariantMethod] = m.Method
	}
	if len(m.Params) > 0 {
		b, _ := json.Marshal(m.Params) // map[string]string always marshals; keys sorted
		ann[AnnotationVariantParams] = string(b)
	}
	if m.Accuracy != nil {
		ann[AnnotationVariantAccuracy] = strconv.FormatFloat(*m.Accuracy, 'g', -1, 64)
	}
	for k, v := range map[string]float64{latencyGo1: m.Latency.GoBatch1Ms, latencyGo32: m.Latency.GoBatch32Ms,
		latencyORT1: m.Latency.ONNXRuntimeBatch1Ms, latencyORT32: m.Latency.ONNXRuntimeBatch32Ms} {
		if v != 0 {
			ann[k] = strconv.FormatFloat(v, 'g', -1, 64)
		}
	}
	if m.PeakMemoryBytes != 0 {
		ann[AnnotationVariantPeakMemory] = strconv.FormatInt(m.PeakMemoryBytes, 10)
	}
	if len(m.Operators) > 0 {
		ann[AnnotationVariantOperators] = strings.Join(m.Operators, ",")
	}
	return ann
}

// VariantMetaFromAnnotations reads variant metadata from a manifest's
// annotations, as read from a registry, and validates it.
func VariantMetaFromAnnotations(ann map[string]string) (VariantMeta, error) {
	name, ok := ann[AnnotationVariant]
	if !ok {
		return VariantMeta{}, fmt.Errorf("no %s annotation: not a variant", AnnotationVariant)
	}
	m := VariantMeta{Name: name, Method: ann[AnnotationVariantMethod]}
	var err error
	if m.SizeBytes, err = intAnnotation(ann, AnnotationVariantSize); err != nil {
		return VariantMeta{}, err
	}
	if m.PeakMemoryBytes, err = intAnnotation(ann, AnnotationVariantPeakMemory); err != nil {
		return VariantMeta{}, err
	}
	if s, ok := ann[AnnotationVariantParams]; ok {
		dec := json.NewDecoder(strings.NewReader(s))
		if err := dec.Decode(&m.Params); err != nil || dec.More() || m.Params == nil {
			return VariantMeta{}, fmt.Errorf("annotation %s: want a JSON object of strings", AnnotationVariantParams)
		}
	}
	if s, ok := ann[AnnotationVariantAccuracy]; ok {
		a, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return VariantMeta{}, fmt.Errorf("annotation %s %q: want a number", AnnotationVariantAccuracy, s)
		}
		m.Accuracy = &a
	}
	for k, p := range map[string]*float64{latencyGo1: &m.Latency.GoBatch1Ms, latencyGo32: &m.Latency.GoBatch32Ms,
		latencyORT1: &m.Latency.ONNXRuntimeBatch1Ms, latencyORT32: &m.Latency.ONNXRuntimeBatch32Ms} {
		if s, ok := ann[k]; ok {
			if *p, err = strconv.ParseFloat(s, 64); err != nil {
				return VariantMeta{}, fmt.Errorf("annotation %s %q: want a number", k, s)
			}
		}
	}
	if s, ok := ann[AnnotationVariantOperators]; ok && s != "" {
		m.Operators = strings.Split(s, ",")
	}
	if err := m.Validate(); err != nil {
		return VariantMeta{}, err
	}
	return m, nil
}

func intAnnotation(ann map[string]string, key string) (int64, error) {
	s, ok := ann[key]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("annotation %s %q: want a whole number of bytes", key, s)
	}
	return n, nil
}

// sortedOperators returns ops sorted with duplicates removed.
func sortedOperators(ops []string) []string {
	ops = slices.Clone(ops)
	slices.Sort(ops)
	return slices.Compact(ops)
}
