// Package cond parses and evaluates the conditions of pipeline steps, such as
//
//	steps.eval.outputs.accuracy > 0.86 && steps.base.outputs.accuracy < steps.eval.outputs.accuracy
//
// An expression compares operands with ==, !=, <, <=, > and >=, and combines
// comparisons with && (and), || (or), ! (not) and parentheses. An operand is a
// reference to an earlier step's output (steps.NAME.outputs.OUTPUT), a number,
// a string in double quotes, or true or false. A comparison of two values
// that both read as numbers compares numbers; otherwise == and != compare
// strings and the ordering operators are an error. A reference alone is true
// when its value is "true" (or a non-zero number).
//
// The package is pure: Parse checks an expression once (when a pipeline is
// applied, so a typo is refused naming the field), and Eval runs it against
// the outputs a run has produced.
package cond

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxLen bounds an expression's length.
const MaxLen = 1024

// maxDepth bounds the nesting of parentheses and negations.
const maxDepth = 32

// Ref is a reference to one output of one step.
type Ref struct {
	// Step is the step's name; Output the output's name.
	Step, Output string
}

// String returns the reference as written: steps.STEP.outputs.OUTPUT.
func (r Ref) String() string { return "steps." + r.Step + ".outputs." + r.Output }

// ParseRef parses a reference steps.STEP.outputs.OUTPUT.
func ParseRef(s string) (Ref, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 4 || parts[0] != "steps" || parts[2] != "outputs" || !isName(parts[1]) || !isName(parts[3]) {
		return Ref{}, fmt.Errorf("%q is not a reference of the form steps.STEP.outputs.OUTPUT", s)
	}
	return Ref{Step: parts[1], Output: parts[3]}, nil
}

func isName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case (c >= '0' && c <= '9') || c == '-':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// Expr is a parsed condition.
type Expr struct {
	src  string
	root node
	refs []Ref
}

// String returns the expression as it was written.
func (e *Expr) String() string { return e.src }

// Refs returns the references the expression reads, in order of first use.
func (e *Expr) Refs() []Ref { return append([]Ref(nil), e.refs...) }

// Parse parses an expression.
func Parse(src string) (*Expr, error) {
	if len(src) > MaxLen {
		return nil, fmt.Errorf("condition of %d bytes, at most %d", len(src), MaxLen)
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	root, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("unexpected %q at offset %d", p.toks[p.pos].text, p.toks[p.pos].off)
	}
	e := &Expr{src: src, root: root}
	seen := map[Ref]bool{}
	walk(root, func(n node) {
		if o, ok := n.(operand); ok && o.kind == opRef && !seen[o.ref] {
			seen[o.ref] = true
			e.refs = append(e.refs, o.ref)
		}
	})
	return e, nil
}

// ErrMissing is wrapped by Eval's error when a referenced output has no value.
var ErrMissing = errors.New("output has no value")

// Eval evaluates the expression; lookup returns the value of a reference
// (ok false when the step produced no such output).
func (e *Expr) Eval(lookup func(Ref) (string, bool)) (bool, error) {
	return evalBool(e.root, lookup)
}

type tokKind int

const (
	tokIdent tokKind = iota // reference, number, true, false
	tokString
	tokOp // == != < <= > >= && || ! ( )
)

type token struct {
	kind tokKind
	text string
	off  int
}

func lex(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string at offset %d", i)
			}
			v, err := strconv.Unquote(s[i : j+1])
			if err != nil {
				return nil, fmt.Errorf("bad string at offset %d: %w", i, err)
			}
			toks = append(toks, token{tokString, v, i})
			i = j + 1
		case strings.ContainsRune("=!<>&|()", rune(c)):
			two := ""
			if i+1 < len(s) {
				two = s[i : i+2]
			}
			switch two {
			case "==", "!=", "<=", ">=", "&&", "||":
				toks = append(toks, token{tokOp, two, i})
				i += 2
				continue
			}
			switch c {
			case '<', '>', '!', '(', ')':
				toks = append(toks, token{tokOp, string(c), i})
				i++
			default:
				return nil, fmt.Errorf("unexpected %q at offset %d (did you mean %q?)", c, i, string(c)+string(c))
			}
		case isIdentByte(c):
			j := i
			for j < len(s) && isIdentByte(s[j]) {
				j++
			}
			toks = append(toks, token{tokIdent, s[i:j], i})
			i = j
		default:
			return nil, fmt.Errorf("unexpected %q at offset %d", c, i)
		}
	}
	return toks, nil
}

func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '+'
}

type node interface{ isNode() }

type opKind int

const (
	opRef opKind = iota
	opNum
	opStr
	opBool
)

type operand struct {
	kind opKind
	ref  Ref
	text string
	num  float64
}

type not struct{ x node }

type binary struct {
	op   string
	l, r node
}

func (operand) isNode() {}
func (not) isNode()     {}
func (binary) isNode()  {}

func walk(n node, f func(node)) {
	f(n)
	switch n := n.(type) {
	case not:
		walk(n.x, f)
	case binary:
		walk(n.l, f)
		walk(n.r, f)
	}
}

type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() (token, bool) {
	if p.pos < len(p.toks) {
		return p.toks[p.pos], true
	}
	return token{}, false
}

func (p *parser) accept(op string) bool {
	if t, ok := p.peek(); ok && t.kind == tokOp && t.text == op {
		p.pos++
		return true
	}
	return false
}

func (p *parser) or(depth int) (node, error) {
	l, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.accept("||") {
		r, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		l = binary{"||", l, r}
	}
	return l, nil
}

func (p *parser) and(depth int) (node, error) {
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.accept("&&") {
		r, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		l = binary{"&&", l, r}
	}
	return l, nil
}

func (p *parser) unary(depth int) (node, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("condition nested deeper than %d", maxDepth)
	}
	if p.accept("!") {
		x, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return not{x}, nil
	}
	return p.comparison(depth)
}

func (p *parser) comparison(depth int) (node, error) {
	l, err := p.primary(depth)
	if err != nil {
		return nil, err
	}
	if t, ok := p.peek(); ok && t.kind == tokOp {
		switch t.text {
		case "==", "!=", "<", "<=", ">", ">=":
			p.pos++
			r, err := p.primary(depth)
			if err != nil {
				return nil, err
			}
			_, lok := l.(operand)
			_, rok := r.(operand)
			if !lok || !rok {
				return nil, fmt.Errorf("%s at offset %d compares values, not conditions", t.text, t.off)
			}
			return binary{t.text, l, r}, nil
		}
	}
	return l, nil
}

func (p *parser) primary(depth int) (node, error) {
	t, ok := p.peek()
	if !ok {
		return nil, errors.New("condition ends where an operand was expected")
	}
	p.pos++
	switch t.kind {
	case tokString:
		return operand{kind: opStr, text: t.text}, nil
	case tokOp:
		if t.text == "(" {
			x, err := p.or(depth + 1)
			if err != nil {
				return nil, err
			}
			if !p.accept(")") {
				return nil, fmt.Errorf("missing ) for the ( at offset %d", t.off)
			}
			return x, nil
		}
		return nil, fmt.Errorf("unexpected %q at offset %d", t.text, t.off)
	}
	switch t.text {
	case "true", "false":
		return operand{kind: opBool, text: t.text}, nil
	}
	if f, err := strconv.ParseFloat(t.text, 64); err == nil {
		return operand{kind: opNum, text: t.text, num: f}, nil
	}
	ref, err := ParseRef(t.text)
	if err != nil {
		return nil, fmt.Errorf("at offset %d: %w", t.off, err)
	}
	return operand{kind: opRef, ref: ref}, nil
}

func value(o operand, lookup func(Ref) (string, bool)) (string, error) {
	switch o.kind {
	case opRef:
		v, ok := lookup(o.ref)
		if !ok {
			return "", fmt.Errorf("%s: %w", o.ref, ErrMissing)
		}
		return v, nil
	default:
		return o.text, nil
	}
}

func evalBool(n node, lookup func(Ref) (string, bool)) (bool, error) {
	switch n := n.(type) {
	case not:
		v, err := evalBool(n.x, lookup)
		return !v, err
	case operand:
		v, err := value(n, lookup)
		if err != nil {
			return false, err
		}
		if v == "true" {
			return true, nil
		}
		if v == "false" || v == "" {
			return false, nil
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f != 0, nil
		}
		return false, fmt.Errorf("%q is not a truth value", v)
	case binary:
		switch n.op {
		case "&&", "||":
			l, err := evalBool(n.l, lookup)
			if err != nil {
				return false, err
			}
			if (n.op == "&&" && !l) || (n.op == "||" && l) {
				return l, nil
			}
			return evalBool(n.r, lookup)
		}
		lo, lok := n.l.(operand)
		ro, rok := n.r.(operand)
		if !lok || !rok {
			return false, fmt.Errorf("%s compares values, not conditions", n.op)
		}
		lv, err := value(lo, lookup)
		if err != nil {
			return false, err
		}
		rv, err := value(ro, lookup)
		if err != nil {
			return false, err
		}
		lf, lerr := strconv.ParseFloat(lv, 64)
		rf, rerr := strconv.ParseFloat(rv, 64)
		if lerr == nil && rerr == nil {
			switch n.op {
			case "==":
				return lf == rf, nil
			case "!=":
				return lf != rf, nil
			case "<":
				return lf < rf, nil
			case "<=":
				return lf <= rf, nil
			case ">":
				return lf > rf, nil
			default:
				return lf >= rf, nil
			}
		}
		switch n.op {
		case "==":
			return lv == rv, nil
		case "!=":
			return lv != rv, nil
		}
		return false, fmt.Errorf("%s needs numbers: %q %s %q", n.op, lv, n.op, rv)
	}
	return false, fmt.Errorf("unknown node %T", n)
}
