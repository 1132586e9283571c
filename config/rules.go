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
// hold (see yamlValue). Each rule is read by the yamlReader, so that each
// problem names the rule, its key, the value and the line
// (ringcache.yaml:14: invalid rules[2].path_regex "(": ...), and the list
// is compiled once, as the file loads; the rules package says what is
// valid.

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
type ruleList struct {
	yamlOnly
	p **rules.Set
}

func ruleValue(p **rules.Set) value { return &ruleList{yamlOnly{"rules"}, p} }

// String renders the rules so that two lists print alike exactly when they
// are the same rules: what Reload and Changed compare.
func (r *ruleList) String() string      { return (*r.p).String() }
func (r *ruleList) Type() string        { return "rules" }
func (r *ruleList) take(from value)     { *r.p = *from.(*ruleList).p }
func rulePath(i int, key string) string { return fmt.Sprintf("rules[%d].%s", i, key) }

// setYAML reads and compiles the rules. Rules with a problem leave the
// setting unset: every problem is reported, those of reading and those of
// compiling the rules that did read.
func (r *ruleList) setYAML(yr *yamlReader, n *yaml.Node) {
	*r.p = nil
	items := yr.sequence("rules", "a list of rules (- host: ..., ttl: ...)", n)
	if len(items) == 0 {
		return
	}
	before := len(yr.errs)
	specs := make([]rules.Spec, len(items))
	read := make([]bool, len(items))
	for i, item := range items {
		n := len(yr.errs)
		specs[i] = readRule(yr, i, item)
		read[i] = len(yr.errs) == n
	}
	if len(yr.errs) == before {
		set, err := rules.New(specs)
		if err == nil {
			*r.p = set
			return
		}
		yr.ruleErrors(specs, err)
	} else {
		for i, ok := range read {
			if _, err := rules.Compile(i, specs[i]); ok && err != nil {
				yr.ruleErrors(specs, err)
			}
		}
	}
	yr.broken = true
}

// readRule reads rule i from its node.
func readRule(r *yamlReader, i int, n *yaml.Node) rules.Spec {
	var s rules.Spec
	names := make([]string, len(ruleKeys))
	kinds := make(map[string]string, len(ruleKeys))
	for j, k := range ruleKeys {
		names[j] = k.name
		kinds[k.name] = k.kind
	}
	at := fmt.Sprintf("rules[%d]", i)
	r.mapping(at, "a mapping of conditions and actions (host: ..., ttl: ...)", n, names, func(key string, v *yaml.Node) {
		path := rulePath(i, key)
		switch kinds[key] {
		case "strings":
			items := r.list(path, v)
			switch key {
			case "methods":
				s.Methods = items
			case "key_headers":
				s.KeyHeaders = items
			case "key_cookies":
				s.KeyCookies = items
			}
		case "bool":
			s.Bypass = parsed(r, path, "bool", v, func(raw string) (bool, error) {
				b, err := strconv.ParseBool(strings.TrimSpace(raw))
				if err != nil {
					return false, errors.New("want true or false")
				}
				return b, nil
			})
		case "duration":
			d := parsed(r, path, "duration", v, parseDuration)
			switch key {
			case "ttl":
				s.TTL = d
			case "max_ttl":
				s.MaxTTL = d
			default:
				s.StaleIfError = d
			}
		default:
			raw, _ := r.scalar(path, "string", v)
			switch key {
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
			}
		}
	})
	return s
}

// ruleErrors reports the *rules.FieldError joined in err at the key paths
// they name: the list item at fault (rules[0].methods[1]) when the error
// names one, else the key, with its text as written.
func (r *yamlReader) ruleErrors(specs []rules.Spec, err error) {
	for _, e := range flatten(err) {
		var fe *rules.FieldError
		if !errors.As(e, &fe) || fe.Index < 0 || fe.Index >= len(specs) {
			r.errs = append(r.errs, &fileError{file: r.file, err: e})
			continue
		}
		if fe.Field == "" {
			r.errs = append(r.errs, &fileError{file: r.file, line: r.src[fmt.Sprintf("rules[%d]", fe.Index)].line,
				err: fmt.Errorf("rules[%d]: %w", fe.Index, fe.Err)})
			continue
		}
		path := rulePath(fe.Index, fe.Field)
		for j := 0; ; j++ {
			item, ok := r.src[fmt.Sprintf("%s[%d]", path, j)]
			if !ok {
				break
			}
			if item.raw == fe.Value {
				path = fmt.Sprintf("%s[%d]", path, j)
				break
			}
		}
		if _, ok := r.src[path]; !ok { // not read from the file: say what the rule holds
			r.errs = append(r.errs, &settingError{name: path, value: fe.Value, src: source{kind: fromFile, file: r.file}, err: fe.Err})
			continue
		}
		r.bad(path, fe.Err)
	}
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
