package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Load builds the configuration from defaults, then the YAML file named by
// --config or RINGCACHE_CONFIG, then environ ("KEY=value" entries as from
// os.Environ), then args (the serve subcommand's arguments), and validates
// the result. Errors from every layer are reported together; each names the
// setting, the offending value and where it came from. On --help or -h the
// usage goes to out and the error satisfies errors.Is(err, ErrHelp).
//
// warnings are problems that do not stop a node, one sentence each, for
// the caller to log, also beside an error (a misspelt variable may be why
// a required setting is missing): an unknown RINGCACHE_* variable, unlike
// an unknown flag or YAML key, is ignored with a warning, because the
// environment is shared with whatever else runs there. Kubernetes, for one,
// sets RINGCACHE_PORT, RINGCACHE_SERVICE_HOST and others in every pod of a
// namespace with a Service named ringcache; those (serviceLinkVar) are
// ignored without a word.
func Load(args []string, environ []string, out io.Writer) (cfg Config, warnings []string, err error) {
	l := newLoader()
	flags, err := l.parseFlags(args)
	if errors.Is(err, ErrHelp) {
		if out != nil {
			Usage(out)
		}
		return Config{}, nil, err
	}
	if err != nil {
		return Config{}, nil, err
	}
	env := l.parseEnv(environ)

	// The file's name comes from the higher layers, so look it up first.
	var path string
	for _, e := range env {
		if e.s.name == "config" {
			path = e.raw
		}
	}
	for _, f := range flags {
		if f.s.name == "config" {
			path = f.raw
		}
	}
	if path != "" {
		l.loadFile(path)
	}
	for _, e := range env {
		l.apply(e.s, e.raw, e.src)
	}
	for _, f := range flags {
		l.apply(f.s, f.raw, f.src)
	}

	l.errs = append(l.errs, l.cfg.validate(l.src, l.failed))
	l.readSecretFiles()
	if err := errors.Join(l.errs...); err != nil {
		return Config{}, l.warnings, err
	}
	return *l.cfg, l.warnings, nil
}

// loader carries one Load call: the Config being built, the table bound to
// it, where each setting's value came from and the errors so far.
type loader struct {
	cfg    *Config
	table  []setting
	byName map[string]*setting
	src    map[string]source // setting name -> layer that set it last
	failed map[string]bool   // settings whose latest value did not parse
	errs   []error
	// warnings are what Load returns as such.
	warnings []string
}

func newLoader() *loader {
	c := Default()
	l := &loader{
		cfg:    &c,
		table:  c.settings(),
		byName: make(map[string]*setting),
		src:    make(map[string]source),
		failed: make(map[string]bool),
	}
	for i := range l.table {
		l.byName[l.table[i].name] = &l.table[i]
	}
	return l
}

// pending is one raw value from the environment or the command line, held
// until the lower layers are applied.
type pending struct {
	s   *setting
	raw string
	src source
}

// recorder is the pflag.Value of every flag: parsing the command line only
// records values, because flags apply last but name the file read first.
type recorder struct {
	s   *setting
	out *[]pending
}

func (r *recorder) Set(v string) error {
	if r.s.fileOnly() {
		return errors.New(onlyInFile(r.s))
	}
	// Repeating a list flag adds items (--join a --join b); any other flag's
	// last occurrence wins when applied in order.
	if r.s.val.isList() {
		for i := range *r.out {
			if p := &(*r.out)[i]; p.s == r.s {
				p.raw += "," + v
				return nil
			}
		}
	}
	*r.out = append(*r.out, pending{s: r.s, raw: v, src: source{kind: fromFlag, key: r.s.flagName()}})
	return nil
}

func (r *recorder) String() string { return "" }
func (r *recorder) Type() string   { return r.s.val.Type() }

func (l *loader) parseFlags(args []string) ([]pending, error) {
	fs := pflag.NewFlagSet("ringcache serve", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // Load prints Usage itself, to the caller's writer
	var out []pending
	for i := range l.table {
		s := &l.table[i]
		f := fs.VarPF(&recorder{s: s, out: &out}, s.flagName(), "", s.help)
		if s.fileOnly() {
			f.Hidden = true // Set refuses it, saying where it goes
		}
		if s.val.Type() == "bool" {
			f.NoOptDefVal = "true" // --sort-query alone means true
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, ErrHelp
		}
		return nil, fmt.Errorf("command line: %w", err)
	}
	if fs.NArg() > 0 {
		hint := "settings are flags such as --origin=URL"
		if _, err := strconv.ParseBool(fs.Arg(0)); err == nil {
			hint = "a boolean flag takes its value after =, as in --sort-query=false"
		}
		return nil, fmt.Errorf("command line: unexpected argument %q (%s)", fs.Arg(0), hint)
	}
	return out, nil
}

// parseEnv picks the RINGCACHE_* entries and warns of unknown ones, which
// are most likely misspelt settings, unless Kubernetes put them there.
func (l *loader) parseEnv(environ []string) []pending {
	byEnv := make(map[string]*setting, len(l.table))
	names := make([]string, 0, len(l.table))
	for i := range l.table {
		s := &l.table[i]
		byEnv[s.envName()] = s
		if !s.fileOnly() {
			names = append(names, s.envName())
		}
	}
	var out []pending
	var unknown []string
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, envPrefix) {
			continue
		}
		s := byEnv[k]
		if s == nil {
			if !serviceLinkVar(k, v) {
				unknown = append(unknown, k)
			}
			continue
		}
		if s.fileOnly() {
			l.warnings = append(l.warnings, fmt.Sprintf("environment variable %s ignored: %s", k, onlyInFile(s)))
			continue
		}
		out = append(out, pending{s: s, raw: v, src: source{kind: fromEnv, key: k}})
	}
	sort.Strings(unknown)
	for _, k := range slices.Compact(unknown) {
		l.warnings = append(l.warnings, fmt.Sprintf("unknown environment variable %s ignored%s", k, suggest(k, names)))
	}
	return out
}

// loadFile applies the YAML file. It walks the node tree rather than
// decoding into a struct, so that every value keeps its line number and is
// parsed by the same code as flags and the environment.
func (l *loader) loadFile(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		l.errs = append(l.errs, fmt.Errorf("read config file: %w", err))
		return
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // no effect on a yaml.Node; unknown keys are checked against the table below
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) { // io.EOF: empty file
			l.errs = append(l.errs, yamlError(path, err))
		}
		return
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			l.errs = append(l.errs, yamlError(path, err))
		} else {
			l.errs = append(l.errs, &fileError{file: path, line: extra.Line, err: errors.New("more than one YAML document")})
		}
		return
	}

	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return // only comments, or "---"
	}
	if root.Kind != yaml.MappingNode {
		l.errs = append(l.errs, &fileError{file: path, line: root.Line,
			err: fmt.Errorf("want a mapping of settings (key: value), got %s", nodeKind(root))})
		return
	}

	names := make([]string, 0, len(l.table))
	for _, s := range l.table {
		if !s.notInFile {
			names = append(names, s.name)
		}
	}
	seen := make(map[string]int)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		fail := func(format string, args ...any) {
			l.errs = append(l.errs, &fileError{file: path, line: k.Line, err: fmt.Errorf(format, args...)})
		}
		if k.Kind != yaml.ScalarNode {
			fail("want a setting name as key, got %s", nodeKind(k))
			continue
		}
		name := k.Value
		if first, dup := seen[name]; dup {
			fail("duplicate key %q (first set on line %d)", name, first)
			continue
		}
		seen[name] = k.Line
		s := l.byName[name]
		if s != nil && s.notInFile {
			fail("%q cannot be set in the config file (use --%s or %s)", name, s.flagName(), s.envName())
			continue
		}
		if s == nil {
			fail("unknown key %q%s", name, suggest(name, names))
			continue
		}
		src := source{kind: fromFile, file: path, line: v.Line}
		if yv, ok := s.val.(yamlValue); ok {
			r := &yamlReader{file: path, src: l.src, failed: l.failed}
			yv.setYAML(r, v)
			l.errs = append(l.errs, r.errs...)
			if r.broken {
				l.failed[name] = true
				continue
			}
			// Values that did not parse are in l.failed by key path:
			// validation checks the rest.
			l.succeed(s, src)
			continue
		}
		switch {
		case v.Kind == yaml.ScalarNode:
			raw := v.Value
			if v.ShortTag() == "!!null" {
				raw = ""
			}
			l.apply(s, raw, src)
		case v.Kind == yaml.SequenceNode && s.val.isList():
			items := make([]string, 0, len(v.Content))
			ok := true
			for _, it := range v.Content {
				if it.Kind == yaml.AliasNode {
					it = it.Alias
				}
				if it.Kind != yaml.ScalarNode {
					l.errs = append(l.errs, &fileError{file: path, line: it.Line,
						err: fmt.Errorf("invalid %s: want a list of strings, got %s in it", name, nodeKind(it))})
					ok = false
					break
				}
				items = append(items, it.Value)
			}
			if !ok {
				l.failed[name] = true
				continue
			}
			src.raw = strings.Join(items, ",")
			if err := s.val.setItems(items); err != nil {
				l.fail(s, src, err)
				continue
			}
			l.succeed(s, src)
		default:
			want := "a single " + s.val.Type() + " value"
			if s.val.isList() {
				want = "a list or a comma-separated string"
			}
			l.errs = append(l.errs, &fileError{file: path, line: v.Line,
				err: fmt.Errorf("invalid %s: want %s, got %s", name, want, nodeKind(v))})
			l.failed[name] = true
		}
	}
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	}
	return "a YAML node of kind " + strconv.Itoa(int(n.Kind))
}

// yamlError turns "yaml: line 3: msg" into "ringcache.yaml:3: msg".
func yamlError(path string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, tail
			}
		}
	}
	return &fileError{file: path, line: line, err: errors.New(msg), cause: err}
}

// apply parses raw into s and records where the value came from.
func (l *loader) apply(s *setting, raw string, src source) {
	src.raw = raw
	if err := s.val.Set(raw); err != nil {
		l.fail(s, src, err)
		return
	}
	l.succeed(s, src)
}

func (l *loader) fail(s *setting, src source, err error) {
	l.errs = append(l.errs, &settingError{name: s.name, value: src.raw, secret: s.secret, src: src, err: err})
	l.failed[s.name] = true
}

func (l *loader) succeed(s *setting, src source) {
	l.src[s.name] = src
	delete(l.failed, s.name) // a higher layer may repair a bad lower one
}

// readSecretFiles replaces admin_token_file and peer_secret_file by the
// secrets they hold, unless validation already found them at fault.
func (l *loader) readSecretFiles() {
	for _, sf := range []struct {
		file, secret string
		check        func(string) error
	}{
		{"admin_token_file", "admin_token", nil},
		{"peer_secret_file", "peer_secret", peerSecret},
	} {
		fs, ss := l.byName[sf.file], l.byName[sf.secret]
		path := fs.val.String()
		if path == "" || l.failed[sf.file] || ss.val.String() != "" {
			continue // nothing to read, or already reported
		}
		src := l.src[sf.file]
		src.raw = path
		data, err := os.ReadFile(path)
		if err != nil {
			l.fail(fs, src, err)
			continue
		}
		secret := strings.TrimSpace(string(data))
		if secret == "" {
			l.fail(fs, src, errors.New("file is empty"))
			continue
		}
		if sf.check != nil {
			if err := sf.check(secret); err != nil {
				l.fail(fs, src, fmt.Errorf("%s in the file %w", sf.secret, err))
				continue
			}
		}
		_ = ss.val.Set(secret) // strings always parse
		_ = fs.val.Set("")
	}
}

// validate checks c; src says where values came from (nil: unknown) and
// skip holds settings whose parse errors are already reported.
func (c *Config) validate(src map[string]source, skip map[string]bool) error {
	table := c.settings()
	byName := make(map[string]*setting, len(table))
	for i := range table {
		byName[table[i].name] = &table[i]
	}
	var errs []error
	failed := make(map[string]bool, len(skip))
	for k := range skip {
		failed[k] = true
	}
	bad := func(name string, err error) {
		s := byName[name]
		where := src[name]
		value := where.raw
		if where.kind == fromDefault {
			value = s.val.String()
		}
		errs = append(errs, &settingError{name: name, value: value, secret: s.secret, src: where, err: err})
		failed[name] = true
	}
	ok := func(names ...string) bool {
		for _, n := range names {
			if failed[n] {
				return false
			}
		}
		return true
	}

	for i := range table {
		s := &table[i]
		if !ok(s.name) {
			continue
		}
		if err := s.val.validate(); err != nil {
			bad(s.name, err)
		}
	}

	if ok("origins") {
		errs = append(errs, c.originErrors(src, failed)...)
	}
	if ok("origin", "origins") && c.Origin == "" && !c.hasDefaultPool() {
		where := ""
		if len(c.Origins) > 0 {
			where = ", or a pool without hosts in origins to serve the hosts no pool lists"
		}
		errs = append(errs, fmt.Errorf("origin is required (flag --origin, env RINGCACHE_ORIGIN or origin: in the config file%s)", where))
	}
	originTLS := []string{"origin_tls_ca", "origin_tls_server_name", "origin_tls_cert", "origin_tls_key"}
	for _, name := range originTLS {
		if !ok(name, "origin") || byName[name].val.String() == "" {
			continue
		}
		switch {
		case c.Origin == "":
			bad(name, errors.New("has no effect unless origin is set (pools in origins take tls: settings of their own)"))
		case !isHTTPS(c.Origin):
			bad(name, fmt.Errorf("has no effect with an http:// origin%s", src["origin"].short()))
		}
	}
	if ok("targeted_cache_control", "strip_targeted_cache_control") {
		for _, f := range c.StripTargetedCacheControl {
			if !slices.ContainsFunc(c.TargetedCacheControl, func(t string) bool { return strings.EqualFold(t, f) }) {
				// RFC 9213 §2.1: a field this cache does not obey passes through.
				bad("strip_targeted_cache_control", fmt.Errorf("%s is not in targeted_cache_control: fields the cluster does not obey pass through", f))
				break
			}
		}
	}

	if ok("max_object_size", "cache_size") && c.MaxObjectSize > c.CacheSize {
		bad("max_object_size", fmt.Errorf("must not exceed cache_size (%s)", FormatBytes(c.CacheSize)))
	}
	for _, pair := range [][2]string{{"admin_token", "admin_token_file"}, {"peer_secret", "peer_secret_file"}} {
		if ok(pair[0], pair[1]) && byName[pair[0]].val.String() != "" && byName[pair[1]].val.String() != "" {
			bad(pair[1], fmt.Errorf("%s is also set%s; set only one", pair[0], src[pair[0]].short()))
		}
	}
	if ok("snapshot_interval") && c.SnapshotInterval > 0 && c.Snapshot == "" {
		bad("snapshot_interval", errors.New("has no effect unless snapshot is set"))
	}
	if c.Gossip == "" {
		for _, name := range []string{"advertise", "join", "peer_listen", "gossip_key", "peer_tls_cert", "peer_tls_key", "peer_tls_ca"} {
			if ok(name) && byName[name].val.String() != "" {
				bad(name, errors.New("has no effect unless gossip is set"))
			}
		}
	} else if ok("gossip", "peer_secret", "peer_secret_file") && c.PeerSecret == "" && c.PeerSecretFile == "" {
		errs = append(errs, fmt.Errorf("peer_secret is required when gossip is set%s: make one with "+
			"`head -c32 /dev/urandom | base64` and pass it as --peer-secret, RINGCACHE_PEER_SECRET, "+
			"peer_secret: in the config file, or in a file named by peer_secret_file", src["gossip"].short()))
	}
	// Settings that only make sense together: all of a group, or none.
	for _, g := range []struct {
		names []string
		what  string
		on    bool
	}{
		{[]string{"tls_cert", "tls_key"}, "client TLS needs both", true},
		{[]string{"peer_tls_cert", "peer_tls_key", "peer_tls_ca"}, "peer TLS needs all three", c.Gossip != ""},
		{[]string{"origin_tls_cert", "origin_tls_key"}, "a client certificate needs both", c.Origin != ""},
	} {
		if !g.on || !ok(g.names...) {
			continue
		}
		var set []string
		for _, name := range g.names {
			if byName[name].val.String() != "" {
				set = append(set, name)
			}
		}
		if len(set) > 0 && len(set) < len(g.names) {
			for _, name := range g.names {
				if byName[name].val.String() == "" {
					bad(name, fmt.Errorf("is required with %s (%s)", strings.Join(set, " and "), g.what))
				}
			}
		}
	}
	// Two listeners on one fixed address would fail at bind time with a
	// less helpful message.
	listeners := []string{"listen", "admin", "peer_listen"}
	for i, a := range listeners {
		for _, b := range listeners[i+1:] {
			va, vb := byName[a].val.String(), byName[b].val.String()
			if ok(a, b) && va != "" && va == vb && !strings.HasSuffix(va, ":0") {
				bad(b, fmt.Errorf("same address as %s", a))
			}
		}
	}
	return errors.Join(errs...)
}

type sourceKind int

const (
	fromDefault sourceKind = iota
	fromFile
	fromEnv
	fromFlag
)

// source is where a setting's value came from.
type source struct {
	kind sourceKind
	file string // fromFile
	line int    // fromFile; 0 if unknown
	key  string // fromEnv: variable name; fromFlag: flag name without dashes
	raw  string // the text as the user wrote it
}

// short names the source in parentheses, for messages about another setting.
func (s source) short() string {
	switch s.kind {
	case fromFile:
		if s.line > 0 {
			return fmt.Sprintf(" (%s:%d)", s.file, s.line)
		}
		return fmt.Sprintf(" (%s)", s.file)
	case fromEnv:
		return " (env " + s.key + ")"
	case fromFlag:
		return " (flag --" + s.key + ")"
	}
	return ""
}

// settingError is a bad value of one setting, e.g.
// invalid cache_size "12XB" (flag --cache-size): unknown unit "XB".
type settingError struct {
	name    string
	value   string
	secret  bool
	noValue bool // a mapping or a list (origins[0].tls): no one value to quote
	src     source
	err     error
}

func (e *settingError) Error() string {
	var b strings.Builder
	if e.src.kind == fromFile {
		b.WriteString(e.src.file)
		if e.src.line > 0 {
			b.WriteString(":" + strconv.Itoa(e.src.line))
		}
		b.WriteString(": ")
	}
	b.WriteString("invalid " + e.name)
	if !e.secret && !e.noValue {
		b.WriteString(" " + strconv.Quote(e.value))
	}
	if e.src.kind != fromFile {
		b.WriteString(e.src.short())
	}
	b.WriteString(": " + e.err.Error())
	return b.String()
}

func (e *settingError) Unwrap() error { return e.err }

// fileError is a problem at a place in the config file.
type fileError struct {
	file  string
	line  int
	err   error // the message
	cause error // the underlying error, if err rephrases it
}

func (e *fileError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.file, e.line, e.err)
	}
	return fmt.Sprintf("%s: %v", e.file, e.err)
}

func (e *fileError) Unwrap() error {
	if e.cause != nil {
		return e.cause
	}
	return e.err
}

// suggest returns ` (did you mean "x"?)` for the candidate closest to word,
// if one is close enough to be a typo.
func suggest(word string, candidates []string) string {
	best, bestDist := "", 3 // at most two edits
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(word), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Usage writes the flag help: one line per setting with its kind, default
// and environment variable, then the settings of the config file only.
func Usage(w io.Writer) {
	c := Default()
	table := c.settings()
	fmt.Fprint(w, "Usage: ringcache serve [flags]\n\n"+
		"Every flag --foo-bar can also be set as RINGCACHE_FOO_BAR in the environment\n"+
		"or as foo_bar: in the YAML file named by --config.\n"+
		"Precedence: flag > environment > file > default.\n\nFlags:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var fileOnly []*setting
	for i := range table {
		s := &table[i]
		if s.fileOnly() {
			fileOnly = append(fileOnly, s)
			continue
		}
		def := strconv.Quote(s.val.String())
		if s.val.String() != "" && s.val.Type() != "string" {
			def = s.val.String() // unambiguous without quotes
		}
		live := ""
		if s.live {
			live = "; reloads on SIGHUP"
		}
		fmt.Fprintf(tw, "  --%s %s\t%s (default %s, env %s%s)\n", s.flagName(), s.val.Type(), s.help, def, s.envName(), live)
	}
	fmt.Fprintf(tw, "  -h, --help\tshow this help\n")
	if len(fileOnly) > 0 {
		fmt.Fprintf(tw, "\nIn the config file only (no flag or environment variable):\n")
		for _, s := range fileOnly {
			live := ""
			if s.live {
				live = " (reloads on SIGHUP)"
			}
			fmt.Fprintf(tw, "  %s:\t%s%s\n", s.name, s.help, live)
		}
	}
	_ = tw.Flush()
}
