package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Settings made of more than a value or a list of values — rules, a list
// of rule mappings, and origins, a list of origin pools — are read from
// their YAML node, which only the config file holds: such a setting has no
// flag (one given is refused, saying where the setting goes) and no
// environment variable (one set is ignored with a warning). Being a
// yamlValue is what makes a setting file-only (setting.fileOnly): one
// mechanism, one set of rules for reading the parts and naming them.
//
// Every part is read by a yamlReader, which records it under its key path
// (origins[1].servers[0], rules[2].ttl) with its line and its text as
// written, so that each problem names the key path, the value and the line
// (ringcache.yaml:14: invalid rules[2].path_regex "(": ...), and all of
// them are reported at once.

// yamlValue is a setting read from its YAML node rather than from text.
type yamlValue interface {
	value
	// setYAML sets the value from n through r, which collects the
	// problems; a part that did not parse is left zero.
	setYAML(r *yamlReader, n *yaml.Node)
}

// yamlOnly gives a yamlValue the text side of a value, which it does not
// have. name is the setting's.
type yamlOnly struct{ name string }

func (y yamlOnly) Set(string) error {
	return errors.New(y.name + " can be set only in the config file")
}
func (yamlOnly) isList() bool            { return false }
func (yamlOnly) setItems([]string) error { return errors.New("not a list of strings") }
func (yamlOnly) validate() error         { return nil } // checked part by part as read, or by Config.validate

// onlyInFile says where the file-only setting s goes, for a flag or a
// variable that tried to set it.
func onlyInFile(s *setting) string { return s.val.Set("").Error() }

func deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// yamlReader reads a yamlValue's parts from the config file.
type yamlReader struct {
	file string
	src  map[string]source // key path -> where it was set
	// failed holds the key paths whose values did not parse, so that
	// validation does not report them again.
	failed map[string]bool
	errs   []error
	// broken: the structure itself is wrong (a list where a mapping
	// belongs, an unknown key), or the value as a whole refused, so it is
	// not worth validating.
	broken bool
}

// failAt reports a problem of structure at n's line.
func (r *yamlReader) failAt(n *yaml.Node, format string, args ...any) {
	r.errs = append(r.errs, &fileError{file: r.file, line: n.Line, err: fmt.Errorf(format, args...)})
	r.broken = true
}

// bad reports the value at path, read before, as a setting's value is
// reported: invalid rules[0].ttl "1 hour": want a duration ....
func (r *yamlReader) bad(path string, err error) {
	s := r.src[path]
	r.errs = append(r.errs, &settingError{name: path, value: s.raw, src: s, err: err})
	r.failed[path] = true
}

func (r *yamlReader) record(path string, n *yaml.Node, raw string) {
	r.src[path] = source{kind: fromFile, file: r.file, line: n.Line, raw: raw}
}

// scalar reads a single value of the given kind ("string", "duration",
// ...: what a message says is wanted). Null is "".
func (r *yamlReader) scalar(path, kind string, n *yaml.Node) (string, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode {
		r.failAt(n, "invalid %s: want a single %s value, got %s", path, kind, nodeKind(n))
		return "", false
	}
	raw := n.Value
	if isNull(n) {
		raw = ""
	}
	r.record(path, n, raw)
	return raw, true
}

// parsed reads a single value with parse; "" is T's zero value.
func parsed[T any](r *yamlReader, path, kind string, n *yaml.Node, parse func(string) (T, error)) T {
	var zero T
	raw, ok := r.scalar(path, kind, n)
	if !ok || raw == "" {
		return zero
	}
	v, err := parse(raw)
	if err != nil {
		r.bad(path, err)
		return zero
	}
	return v
}

// list reads a list of strings, written as a YAML list or, as a list
// setting's value, a comma-separated string. Each item is recorded as
// path[i], at its own line in a YAML list; path holds them joined.
func (r *yamlReader) list(path string, n *yaml.Node) []string {
	n = deref(n)
	var items []string
	switch {
	case isNull(n):
		return nil
	case n.Kind == yaml.ScalarNode:
		items = cleanItems(strings.Split(n.Value, ","))
		for i, it := range items {
			r.record(fmt.Sprintf("%s[%d]", path, i), n, it)
		}
	case n.Kind == yaml.SequenceNode:
		for _, it := range n.Content {
			it = deref(it)
			if it.Kind != yaml.ScalarNode {
				r.failAt(it, "invalid %s: want a list of strings, got %s in it", path, nodeKind(it))
				return nil
			}
			if v := strings.TrimSpace(it.Value); v != "" && !isNull(it) {
				r.record(fmt.Sprintf("%s[%d]", path, len(items)), it, v)
				items = append(items, v)
			}
		}
	default:
		r.failAt(n, "invalid %s: want a list or a comma-separated string, got %s", path, nodeKind(n))
		return nil
	}
	r.record(path, n, strings.Join(items, ","))
	return items
}

// sequence returns the items of a YAML list at path, what describing one
// ("a list of rules (- host: ..., ttl: ...)"); null is none.
func (r *yamlReader) sequence(path, what string, n *yaml.Node) []*yaml.Node {
	n = deref(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		r.failAt(n, "invalid %s: want %s, got %s", path, what, nodeKind(n))
		return nil
	}
	r.record(path, n, "")
	items := make([]*yaml.Node, len(n.Content))
	for i, it := range n.Content {
		items[i] = deref(it)
	}
	return items
}

// mapping calls set for each key of the mapping at path, what describing
// one ("a mapping (key: value)"), refusing keys not in keys (with a
// suggestion) and keys given twice. Null is an empty mapping.
func (r *yamlReader) mapping(path, what string, n *yaml.Node, keys []string, set func(key string, v *yaml.Node)) {
	n = deref(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		r.failAt(n, "invalid %s: want %s, got %s", path, what, nodeKind(n))
		return
	}
	r.record(path, n, "")
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		name := k.Value
		switch first, dup := seen[name]; {
		case k.Kind != yaml.ScalarNode:
			r.failAt(k, "%s: want a key such as %s, got %s", path, keys[0], nodeKind(k))
		case dup:
			r.failAt(k, "%s: duplicate key %q (first set on line %d)", path, name, first)
		case !slices.Contains(keys, name):
			r.failAt(k, "%s: unknown key %q%s", path, name, suggest(name, keys))
		default:
			seen[name] = k.Line
			set(name, v)
		}
	}
}
