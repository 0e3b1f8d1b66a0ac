package cond

import (
	"errors"
	"strings"
	"testing"
)

func TestEval(t *testing.T) {
	outs := map[string]string{
		"steps.eval.outputs.accuracy": "0.87",
		"steps.base.outputs.accuracy": "0.82",
		"steps.check.outputs.ok":      "true",
		"steps.check.outputs.label":   "shirt",
		"steps.zero.outputs.n":        "0",
	}
	lookup := func(r Ref) (string, bool) { v, ok := outs[r.String()]; return v, ok }
	for _, tc := range []struct {
		expr    string
		want    bool
		wantErr string
	}{
		{expr: "steps.eval.outputs.accuracy > 0.86", want: true},
		{expr: "steps.eval.outputs.accuracy > 0.9", want: false},
		{expr: "steps.eval.outputs.accuracy >= 0.87", want: true},
		{expr: "steps.eval.outputs.accuracy > steps.base.outputs.accuracy", want: true},
		{expr: "steps.eval.outputs.accuracy < steps.base.outputs.accuracy", want: false},
		{expr: "steps.eval.outputs.accuracy > 0.9 || steps.check.outputs.ok", want: true},
		{expr: "steps.eval.outputs.accuracy > 0.8 && !steps.check.outputs.ok", want: false},
		{expr: "!(steps.eval.outputs.accuracy <= 0.5)", want: true},
		{expr: `steps.check.outputs.label == "shirt"`, want: true},
		{expr: `steps.check.outputs.label != "shirt"`, want: false},
		{expr: "steps.zero.outputs.n", want: false},
		{expr: "1 == 1.0", want: true},
		{expr: "true", want: true},
		{expr: "false || (true && 2 > 1)", want: true},
		// Short-circuit: the missing output is not read.
		{expr: "false && steps.gone.outputs.x > 1", want: false},
		{expr: "steps.gone.outputs.x > 1", wantErr: "has no value"},
		{expr: `steps.check.outputs.label > "a"`, wantErr: "needs numbers"},
		{expr: `steps.check.outputs.label`, wantErr: "not a truth value"},
	} {
		e, err := Parse(tc.expr)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.expr, err)
		}
		got, err := e.Eval(lookup)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Eval(%q) = %v, %v; want error with %q", tc.expr, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Eval(%q) = %v, %v; want %v", tc.expr, got, err, tc.want)
		}
	}
}

func TestEvalMissing(t *testing.T) {
	e, err := Parse("steps.a.outputs.b == 1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Eval(func(Ref) (string, bool) { return "", false })
	if !errors.Is(err, ErrMissing) {
		t.Fatalf("err = %v, want ErrMissing", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{"", "ends where an operand"},
		{"steps.eval.outputs.accuracy >", "ends where an operand"},
		{"steps.eval.accuracy > 1", "steps.STEP.outputs.OUTPUT"},
		{"accuracy > 1", "steps.STEP.outputs.OUTPUT"},
		{"steps.a.outputs.b = 1", `did you mean "=="`},
		{"steps.a.outputs.b & true", `did you mean "&&"`},
		{"(true", "missing )"},
		{"true)", `unexpected ")"`},
		{`"abc`, "unterminated string"},
		{"1 > 2 > 3", `unexpected ">"`},
		{"(1 > 2) == true", "compares values, not conditions"},
		{"a$b", `unexpected '$'`},
		{strings.Repeat("(", 40) + "true" + strings.Repeat(")", 40), "nested deeper"},
		{strings.Repeat("x", MaxLen+1), "at most"},
	} {
		if _, err := Parse(tc.expr); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error = %v, want one with %q", tc.expr, err, tc.want)
		}
	}
}

func TestRefs(t *testing.T) {
	e, err := Parse("steps.b.outputs.x > steps.a.outputs.y || steps.b.outputs.x < 1")
	if err != nil {
		t.Fatal(err)
	}
	got := e.Refs()
	if len(got) != 2 || got[0] != (Ref{"b", "x"}) || got[1] != (Ref{"a", "y"}) {
		t.Fatalf("Refs = %v", got)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"steps.eval.outputs.accuracy > 0.86", `!(a == "x") || true`, "((1))", "1 <= 2 && 3 >= 2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err != nil {
			return
		}
		if e.String() != s {
			t.Fatalf("String() = %q, want %q", e.String(), s)
		}
		for _, r := range e.Refs() {
			if back, err := ParseRef(r.String()); err != nil || back != r {
				t.Fatalf("ref %v does not round-trip: %v", r, err)
			}
		}
		// Evaluation never panics, whatever the outputs hold.
		_, _ = e.Eval(func(Ref) (string, bool) { return "0.5", true })
		_, _ = e.Eval(func(Ref) (string, bool) { return "", false })
	})
}
