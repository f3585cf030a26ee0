package extract

import (
	"fmt"
	"strings"
)

// This file holds a parser for the subset of FHIRPath used by search
// parameter expressions. It produces a small AST that compile.go turns into
// a typed evaluator. Anything outside the subset is a parse or compile
// error, and the expression is then handed to the fallback engine.

type astKind int

const (
	astIdent    astKind = iota // name (member of the focus, or a type name at the root)
	astMember                  // left.name
	astCall                    // [left.]name(args)
	astIndex                   // left[arg]
	astBinary                  // left op right
	astString                  // 'literal'
	astNumber                  // 12, 1.5
	astBool                    // true / false
	astVar                     // %resource, %context, $this
	astTypeSpec                // a type name on the right of is/as
)

type ast struct {
	kind  astKind
	name  string // identifier, function, operator, literal text, variable
	left  *ast
	right *ast
	args  []*ast
}

func (a *ast) String() string {
	if a == nil {
		return "<nil>"
	}
	switch a.kind {
	case astIdent, astTypeSpec:
		return a.name
	case astMember:
		return a.left.String() + "." + a.name
	case astCall:
		var b strings.Builder
		if a.left != nil {
			b.WriteString(a.left.String())
			b.WriteByte('.')
		}
		b.WriteString(a.name)
		b.WriteByte('(')
		for i, x := range a.args {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(x.String())
		}
		b.WriteByte(')')
		return b.String()
	case astIndex:
		return a.left.String() + "[" + a.args[0].String() + "]"
	case astBinary:
		return "(" + a.left.String() + " " + a.name + " " + a.right.String() + ")"
	case astString:
		return "'" + a.name + "'"
	default:
		return a.name
	}
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tVar
	tOp // punctuation and operators: . ( ) [ ] , | = != < > <= >= ~ !~ + - * / &
)

type token struct {
	kind tokKind
	text string
}

func lex(s string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '/' && i+1 < len(s) && s[i+1] == '/':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case isIdentStart(c):
			j := i + 1
			for j < len(s) && isIdentPart(s[j]) {
				j++
			}
			toks = append(toks, token{tIdent, s[i:j]})
			i = j
		case c == '`':
			j := strings.IndexByte(s[i+1:], '`')
			if j < 0 {
				return nil, fmt.Errorf("unterminated `identifier`")
			}
			toks = append(toks, token{tIdent, s[i+1 : i+1+j]})
			i += j + 2
		case c == '%' || c == '$':
			j := i + 1
			if j < len(s) && s[j] == '`' {
				k := strings.IndexByte(s[j+1:], '`')
				if k < 0 {
					return nil, fmt.Errorf("unterminated variable")
				}
				toks = append(toks, token{tVar, string(c) + s[j+1:j+1+k]})
				i = j + k + 2
				continue
			}
			for j < len(s) && isIdentPart(s[j]) {
				j++
			}
			toks = append(toks, token{tVar, s[i:j]})
			i = j
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(s) {
					return nil, fmt.Errorf("unterminated string literal")
				}
				if s[j] == '\\' && j+1 < len(s) {
					switch s[j+1] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					case 'r':
						b.WriteByte('\r')
					default:
						b.WriteByte(s[j+1])
					}
					j += 2
					continue
				}
				if s[j] == '\'' {
					break
				}
				b.WriteByte(s[j])
				j++
			}
			toks = append(toks, token{tString, b.String()})
			i = j + 1
		case c >= '0' && c <= '9':
			j := i + 1
			for j < len(s) && (s[j] >= '0' && s[j] <= '9') {
				j++
			}
			if j+1 < len(s) && s[j] == '.' && s[j+1] >= '0' && s[j+1] <= '9' {
				j++
				for j < len(s) && (s[j] >= '0' && s[j] <= '9') {
					j++
				}
			}
			toks = append(toks, token{tNumber, s[i:j]})
			i = j
		default:
			two := ""
			if i+1 < len(s) {
				two = s[i : i+2]
			}
			switch two {
			case "!=", "<=", ">=", "!~":
				toks = append(toks, token{tOp, two})
				i += 2
				continue
			}
			if strings.IndexByte(".()[],|=<>~+-*/&", c) >= 0 {
				toks = append(toks, token{tOp, string(c)})
				i++
				continue
			}
			return nil, fmt.Errorf("unexpected character %q", c)
		}
	}
	toks = append(toks, token{tEOF, ""})
	return toks, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

type parser struct {
	toks []token
	pos  int
}

func parseFHIRPath(s string) (*ast, error) {
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	a, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tEOF {
		return nil, fmt.Errorf("unexpected %q", p.peek().text)
	}
	return a, nil
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

// Operator precedence (higher binds tighter), per the FHIRPath grammar.
func binaryPrec(t token) int {
	switch t.kind {
	case tIdent:
		switch t.text {
		case "implies":
			return 1
		case "or", "xor":
			return 2
		case "and":
			return 3
		case "in", "contains":
			return 4
		case "is", "as":
			return 9
		case "div", "mod":
			return 11
		}
	case tOp:
		switch t.text {
		case "=", "~", "!=", "!~":
			return 5
		case "<", ">", "<=", ">=":
			return 6
		case "|":
			return 7
		case "+", "-", "&":
			return 10
		case "*", "/":
			return 11
		}
	}
	return 0
}

func (p *parser) expr(minPrec int) (*ast, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		prec := binaryPrec(t)
		if prec == 0 || prec <= minPrec {
			return left, nil
		}
		p.next()
		if t.text == "is" || t.text == "as" {
			ts, err := p.typeSpec()
			if err != nil {
				return nil, err
			}
			left = &ast{kind: astBinary, name: t.text, left: left, right: ts}
			continue
		}
		right, err := p.expr(prec)
		if err != nil {
			return nil, err
		}
		left = &ast{kind: astBinary, name: t.text, left: left, right: right}
	}
}

func (p *parser) typeSpec() (*ast, error) {
	t := p.next()
	if t.kind != tIdent {
		return nil, fmt.Errorf("expected type name, got %q", t.text)
	}
	name := t.text
	for p.peek().kind == tOp && p.peek().text == "." && p.toks[p.pos+1].kind == tIdent {
		p.next()
		name += "." + p.next().text
	}
	return &ast{kind: astTypeSpec, name: name}, nil
}

func (p *parser) unary() (*ast, error) {
	t := p.peek()
	if t.kind == tOp && (t.text == "-" || t.text == "+") {
		p.next()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		if x.kind == astNumber {
			if t.text == "-" {
				x.name = "-" + x.name
			}
			return x, nil
		}
		return nil, fmt.Errorf("unary %s unsupported", t.text)
	}
	return p.postfix()
}

func (p *parser) postfix() (*ast, error) {
	left, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tOp {
			return left, nil
		}
		switch t.text {
		case ".":
			p.next()
			id := p.next()
			if id.kind != tIdent {
				return nil, fmt.Errorf("expected identifier after '.', got %q", id.text)
			}
			if p.peek().kind == tOp && p.peek().text == "(" {
				args, err := p.args()
				if err != nil {
					return nil, err
				}
				left = &ast{kind: astCall, name: id.text, left: left, args: args}
			} else {
				left = &ast{kind: astMember, name: id.text, left: left}
			}
		case "[":
			p.next()
			idx, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			if c := p.next(); c.kind != tOp || c.text != "]" {
				return nil, fmt.Errorf("expected ']'")
			}
			left = &ast{kind: astIndex, left: left, args: []*ast{idx}}
		default:
			return left, nil
		}
	}
}

func (p *parser) args() ([]*ast, error) {
	p.next() // (
	var args []*ast
	if t := p.peek(); t.kind == tOp && t.text == ")" {
		p.next()
		return args, nil
	}
	for {
		a, err := p.expr(0)
		if err != nil {
			return nil, err
		}
		args = append(args, a)
		t := p.next()
		if t.kind == tOp && t.text == ")" {
			return args, nil
		}
		if t.kind != tOp || t.text != "," {
			return nil, fmt.Errorf("expected ',' or ')' in arguments, got %q", t.text)
		}
	}
}

func (p *parser) term() (*ast, error) {
	t := p.next()
	switch t.kind {
	case tIdent:
		switch t.text {
		case "true", "false":
			return &ast{kind: astBool, name: t.text}, nil
		}
		if p.peek().kind == tOp && p.peek().text == "(" {
			args, err := p.args()
			if err != nil {
				return nil, err
			}
			return &ast{kind: astCall, name: t.text, args: args}, nil
		}
		return &ast{kind: astIdent, name: t.text}, nil
	case tString:
		return &ast{kind: astString, name: t.text}, nil
	case tNumber:
		return &ast{kind: astNumber, name: t.text}, nil
	case tVar:
		return &ast{kind: astVar, name: t.text}, nil
	case tOp:
		if t.text == "(" {
			e, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			if c := p.next(); c.kind != tOp || c.text != ")" {
				return nil, fmt.Errorf("expected ')'")
			}
			return e, nil
		}
	}
	return nil, fmt.Errorf("unexpected %q", t.text)
}

// splitUnion splits an expression on its top-level '|' operators.
func splitUnion(a *ast) []*ast {
	if a.kind == astBinary && a.name == "|" {
		return append(splitUnion(a.left), splitUnion(a.right)...)
	}
	return []*ast{a}
}
