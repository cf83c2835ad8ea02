package main

import (
	"fmt"
	"strings"
	"unicode"
)

// A small PromQL scanner for the lint rules: it finds every vector selector
// with its matchers, its range and the function the range is passed to. It
// knows only what the dashboards use; promtool parses the queries for real
// (TestDashboardQueriesParse), and the e2e test runs them.

type matcher struct {
	name, op, value string
}

type selector struct {
	metric   string
	matchers []matcher
	rng      string // inside [...], "" for an instant vector
	function string // the function whose argument the selector is, "" if none
}

func (s selector) String() string {
	var m []string
	for _, x := range s.matchers {
		m = append(m, fmt.Sprintf("%s%s%q", x.name, x.op, x.value))
	}
	out := s.metric + "{" + strings.Join(m, ", ") + "}"
	if s.rng != "" {
		out += "[" + s.rng + "]"
	}
	return out
}

// keywords are identifiers that are not metric names.
var keywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
}

type token struct {
	kind string // ident, string, number, punct
	text string
}

func tokenize(expr string) ([]token, error) {
	var out []token
	r := []rune(expr)
	for i := 0; i < len(r); {
		c := r[i]
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			var b strings.Builder
			for j < len(r) && r[j] != c {
				if r[j] == '\\' && c != '`' && j+1 < len(r) {
					j++
				}
				b.WriteRune(r[j])
				j++
			}
			if j >= len(r) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			out = append(out, token{"string", b.String()})
			i = j + 1
		case c == '$' || c == '_' || c == ':' || unicode.IsLetter(c):
			j := i
			for j < len(r) && (r[j] == '$' || r[j] == '_' || r[j] == ':' || unicode.IsLetter(r[j]) || unicode.IsDigit(r[j])) {
				j++
			}
			out = append(out, token{"ident", string(r[i:j])})
			i = j
		case unicode.IsDigit(c) || c == '.':
			j := i
			for j < len(r) && (unicode.IsDigit(r[j]) || r[j] == '.' || unicode.IsLetter(r[j])) {
				j++
			}
			out = append(out, token{"number", string(r[i:j])})
			i = j
		case c == '=' || c == '!' || c == '<' || c == '>':
			j := i + 1
			if j < len(r) && (r[j] == '=' || r[j] == '~') {
				j++
			}
			out = append(out, token{"punct", string(r[i:j])})
			i = j
		default:
			out = append(out, token{"punct", string(c)})
			i++
		}
	}
	return out, nil
}

// selectors returns every vector selector of expr.
func selectors(expr string) ([]selector, error) {
	toks, err := tokenize(expr)
	if err != nil {
		return nil, err
	}
	var (
		out   []selector
		calls []string // the function of each open parenthesis ("" for grouping)
	)
	peek := func(i int) string {
		if i < len(toks) {
			return toks[i].text
		}
		return ""
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.kind == "punct" && t.text == "(":
			calls = append(calls, "")
		case t.kind == "punct" && t.text == ")":
			if len(calls) == 0 {
				return nil, fmt.Errorf("unbalanced ) in %q", expr)
			}
			calls = calls[:len(calls)-1]
		case t.kind == "ident" && keywords[t.text]:
			// A label list follows the grouping keywords: skip it.
			if t.text != "and" && t.text != "or" && t.text != "unless" && t.text != "bool" && t.text != "offset" && peek(i+1) == "(" {
				for i < len(toks) && toks[i].text != ")" {
					i++
				}
			}
		case t.kind == "ident" && (peek(i+1) == "by" || peek(i+1) == "without") && peek(i+2) == "(":
			// An aggregation with its grouping first: sum by (a, b) (...).
			i += 2
			for i < len(toks) && toks[i].text != ")" {
				i++
			}
			if peek(i+1) != "(" {
				return nil, fmt.Errorf("no ( after %s's grouping in %q", t.text, expr)
			}
			calls = append(calls, t.text)
			i++
		case t.kind == "ident" && peek(i+1) == "(":
			calls = append(calls, t.text)
			i++
		case t.kind == "ident":
			s := selector{metric: t.text}
			if peek(i+1) == "{" {
				i += 2
				for i < len(toks) && toks[i].text != "}" {
					if toks[i].text == "," {
						i++
						continue
					}
					if i+2 >= len(toks) || toks[i].kind != "ident" || toks[i+2].kind != "string" {
						return nil, fmt.Errorf("bad matcher near %q in %q", toks[i].text, expr)
					}
					s.matchers = append(s.matchers, matcher{toks[i].text, toks[i+1].text, toks[i+2].text})
					i += 3
				}
				if i >= len(toks) {
					return nil, fmt.Errorf("unterminated selector in %q", expr)
				}
			}
			if peek(i+1) == "[" {
				j := i + 2
				var b strings.Builder
				for j < len(toks) && toks[j].text != "]" {
					b.WriteString(toks[j].text)
					j++
				}
				s.rng = b.String()
				i = j
			}
			if len(calls) > 0 {
				s.function = calls[len(calls)-1]
			}
			out = append(out, s)
		}
	}
	if len(calls) != 0 {
		return nil, fmt.Errorf("unbalanced ( in %q", expr)
	}
	return out, nil
}
