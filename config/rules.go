package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ringcache/ringcache/rules"
	"go.yaml.in/yaml/v3"
)

// The rules setting is a list of mappings, which only the YAML file can
// hold: it has no flag and no environment variable. It is read here, from
// the node tree, so that each problem names the rule, its key, the value
// and the line (ringcache.yaml:14: invalid rules[2].path_regex "(": ...),
// and it is compiled once, as the file loads; the rules package says what
// is valid.

// ruleKeys are the keys of one rule, in the order of rules.Spec, with the
// YAML kind each takes.
var ruleKeys = []struct {
	name string
	kind string // string, strings, bool or duration
}{
	{"host", "string"}, {"path_prefix", "string"}, {"path_regex", "string"}, {"methods", "strings"},
	{"header", "string"}, {"header_value", "string"}, {"cookie", "string"},
	{"bypass", "bool"}, {"ttl", "duration"}, {"max_ttl", "duration"},
	{"key_headers", "strings"}, {"key_cookies", "strings"}, {"stale_if_error", "duration"},
}

// ruleList is the value of the rules setting.
type ruleList struct{ p **rules.Set }

func ruleValue(p **rules.Set) value { return &ruleList{p: p} }

func (r *ruleList) Set(string) error {
	return errors.New("rules can be set only in the config file")
}

// String renders the rules so that two lists print alike exactly when they
// are the same rules: what Reload and Changed compare.
func (r *ruleList) String() string          { return (*r.p).String() }
func (r *ruleList) Type() string            { return "rules" }
func (r *ruleList) isList() bool            { return false }
func (r *ruleList) setItems([]string) error { return errors.New("not a list of strings") }
func (r *ruleList) validate() error         { return nil } // compiled, so checked, as it was read
func (r *ruleList) take(from value)         { *r.p = *from.(*ruleList).p }

// nodeValue is a value read from its YAML node rather than from text.
type nodeValue interface {
	// setNode sets the value from n, read from file, or returns every
	// problem found, each naming its place.
	setNode(file string, n *yaml.Node) []error
}

// place is where a rule's keys are in the file, for messages.
type place struct {
	line  int            // the rule's mapping
	lines map[string]int // key (or key + "\x00" + list item) -> line
	raw   map[string]string
}

func (r *ruleList) setNode(file string, n *yaml.Node) []error {
	if (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null") || (n.Kind == yaml.SequenceNode && len(n.Content) == 0) {
		*r.p = nil // "rules:" alone, or "rules: []": none
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return []error{&fileError{file: file, line: n.Line,
			err: fmt.Errorf("invalid rules: want a list of rules (- host: ..., ttl: ...), got %s", nodeKind(n))}}
	}
	var errs []error
	specs := make([]rules.Spec, len(n.Content))
	places := make([]place, len(n.Content))
	parsed := make([]bool, len(n.Content))
	for i, item := range n.Content {
		if item.Kind == yaml.AliasNode {
			item = item.Alias
		}
		if item.Kind != yaml.MappingNode {
			errs = append(errs, &fileError{file: file, line: item.Line,
				err: fmt.Errorf("invalid rules[%d]: want a mapping of conditions and actions (host: ..., ttl: ...), got %s", i, nodeKind(item))})
			continue
		}
		var perrs []error
		specs[i], places[i], perrs = parseRule(file, i, item)
		errs = append(errs, perrs...)
		parsed[i] = len(perrs) == 0
	}
	if len(errs) == 0 {
		set, err := rules.New(specs)
		if err == nil {
			*r.p = set
			return nil
		}
		return ruleErrors(file, places, err)
	}
	// Report what the rules that did parse get wrong too.
	for i, ok := range parsed {
		if ok {
			if _, err := rules.Compile(i, specs[i]); err != nil {
				errs = append(errs, ruleErrors(file, places, err)...)
			}
		}
	}
	return errs
}

// parseRule reads rule i from its mapping node.
func parseRule(file string, i int, m *yaml.Node) (rules.Spec, place, []error) {
	var s rules.Spec
	pl := place{line: m.Line, lines: map[string]int{}, raw: map[string]string{}}
	var errs []error
	names := make([]string, len(ruleKeys))
	kinds := map[string]string{}
	for j, k := range ruleKeys {
		names[j] = k.name
		kinds[k.name] = k.kind
	}
	for j := 0; j+1 < len(m.Content); j += 2 {
		k, v := m.Content[j], m.Content[j+1]
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		at := func(line int, format string, args ...any) {
			errs = append(errs, &fileError{file: file, line: line, err: fmt.Errorf(format, args...)})
		}
		if k.Kind != yaml.ScalarNode {
			at(k.Line, "rules[%d]: want a key such as host or ttl, got %s", i, nodeKind(k))
			continue
		}
		name := k.Value
		if first, dup := pl.lines[name]; dup {
			at(k.Line, "rules[%d]: duplicate key %q (first set on line %d)", i, name, first)
			continue
		}
		kind, known := kinds[name]
		if !known {
			at(k.Line, "rules[%d]: unknown key %q%s", i, name, suggest(name, names))
			continue
		}
		pl.lines[name] = v.Line
		full := fmt.Sprintf("rules[%d].%s", i, name)
		bad := func(raw string, err error) {
			errs = append(errs, &settingError{name: full, value: raw, src: source{kind: fromFile, file: file, line: v.Line, raw: raw}, err: err})
		}
		var items []string
		switch {
		case v.Kind == yaml.ScalarNode:
			raw := v.Value
			if v.ShortTag() == "!!null" {
				raw = ""
			}
			pl.raw[name] = raw
			if kind == "strings" {
				items = cleanItems(strings.Split(raw, ","))
				for _, it := range items {
					pl.lines[name+"\x00"+it] = v.Line
				}
			}
		case v.Kind == yaml.SequenceNode && kind == "strings":
			ok := true
			for _, it := range v.Content {
				if it.Kind == yaml.AliasNode {
					it = it.Alias
				}
				if it.Kind != yaml.ScalarNode {
					at(it.Line, "invalid %s: want a list of strings, got %s in it", full, nodeKind(it))
					ok = false
					break
				}
				if item := strings.TrimSpace(it.Value); item != "" {
					items = append(items, item)
					pl.lines[name+"\x00"+item] = it.Line
				}
			}
			if !ok {
				continue
			}
			pl.raw[name] = strings.Join(items, ",")
		default:
			want := "a single " + kind + " value"
			if kind == "strings" {
				want = "a list or a comma-separated string"
			}
			at(v.Line, "invalid %s: want %s, got %s", full, want, nodeKind(v))
			continue
		}
		raw := pl.raw[name]
		switch name {
		case "host":
			s.Host = raw
		case "path_prefix":
			s.PathPrefix = raw
		case "path_regex":
			s.PathRegex = raw
		case "header":
			s.Header = raw
		case "header_value":
			s.HeaderValue = raw
		case "cookie":
			s.Cookie = raw
		case "methods":
			s.Methods = items
		case "key_headers":
			s.KeyHeaders = items
		case "key_cookies":
			s.KeyCookies = items
		case "bypass":
			if raw == "" {
				break
			}
			b, err := strconv.ParseBool(strings.TrimSpace(raw))
			if err != nil {
				bad(raw, errors.New("want true or false"))
			}
			s.Bypass = b
		case "ttl", "max_ttl", "stale_if_error":
			if raw == "" {
				break
			}
			d, err := parseDuration(raw)
			if err != nil {
				bad(raw, err)
			}
			switch name {
			case "ttl":
				s.TTL = d
			case "max_ttl":
				s.MaxTTL = d
			default:
				s.StaleIfError = d
			}
		}
	}
	return s, pl, errs
}

// ruleErrors places the *rules.FieldError joined in err in the file.
func ruleErrors(file string, places []place, err error) []error {
	var out []error
	for _, e := range flatten(err) {
		var fe *rules.FieldError
		if !errors.As(e, &fe) || fe.Index < 0 || fe.Index >= len(places) {
			out = append(out, &fileError{file: file, err: e})
			continue
		}
		pl := places[fe.Index]
		if fe.Field == "" {
			out = append(out, &fileError{file: file, line: pl.line, err: fmt.Errorf("rules[%d]: %w", fe.Index, fe.Err)})
			continue
		}
		// The value as written: the list item the rule names, or the
		// key's text.
		raw, line := fe.Value, pl.lines[fe.Field+"\x00"+fe.Value]
		if line == 0 {
			raw, line = pl.raw[fe.Field], pl.lines[fe.Field]
		}
		name := fmt.Sprintf("rules[%d].%s", fe.Index, fe.Field)
		out = append(out, &settingError{name: name, value: raw, src: source{kind: fromFile, file: file, line: line, raw: raw}, err: fe.Err})
	}
	return out
}

// flatten lists the errors joined in err, at any depth.
func flatten(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, flatten(e)...)
	}
	return out
}
