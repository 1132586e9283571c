package examples

// Tests of the repository's Dockerfile and .dockerignore: the Dockerfile's
// structure, its go build command (which must give a static binary), the
// image's HEALTHCHECK run against a live server, and the image's ENV as a
// configuration.

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cluster"
	"github.com/valyala/fasthttp"
)

// --- Dockerfile parsing ---------------------------------------------------

type dockerInstr struct {
	cmd  string // upper case
	args string // the rest of the logical line
	line int
}

type dockerStage struct {
	image, name string
	instrs      []dockerInstr
}

// parseDockerfile splits a Dockerfile into stages of instructions. It
// handles what this repository's Dockerfile uses: comments, line
// continuations with backslash, FROM ... AS name. Heredocs and escape
// directives are not supported.
func parseDockerfile(text string) ([]dockerStage, error) {
	var stages []dockerStage
	var buf strings.Builder
	start := 0
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		// Docker drops comment and blank lines, inside continuations too.
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if buf.Len() == 0 {
			start = i + 1
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			buf.WriteString(rest)
			buf.WriteByte(' ')
			continue
		}
		buf.WriteString(line)
		cmd, args, _ := strings.Cut(buf.String(), " ")
		buf.Reset()
		in := dockerInstr{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			var words []string
			for _, w := range strings.Fields(in.args) {
				if !strings.HasPrefix(w, "--") { // --platform=...
					words = append(words, w)
				}
			}
			if len(words) == 0 {
				return nil, fmt.Errorf("line %d: FROM without an image", in.line)
			}
			st := dockerStage{image: words[0]}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				st.name = words[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			return nil, fmt.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	if buf.Len() > 0 {
		return nil, fmt.Errorf("the file ends inside a line continuation")
	}
	return stages, nil
}

// find returns the stage's instructions named cmd.
func (s dockerStage) find(cmd string) []dockerInstr {
	var out []dockerInstr
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// env returns the stage's ENV settings as KEY=value, in order.
func (s dockerStage) env() ([]string, error) {
	var out []string
	for _, in := range s.find("ENV") {
		words, err := shellWords(in.args)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", in.line, err)
		}
		if len(words) > 0 && !strings.Contains(words[0], "=") { // legacy ENV KEY value
			out = append(out, words[0]+"="+strings.Join(words[1:], " "))
			continue
		}
		for _, w := range words {
			if !strings.Contains(w, "=") {
				return nil, fmt.Errorf("line %d: ENV item %q is not KEY=value", in.line, w)
			}
			out = append(out, w)
		}
	}
	return out, nil
}

// shellWords splits a shell command line into words, honouring single and
// double quotes and backslashes. It expands nothing: a word containing $
// is returned as is, and callers that run it must reject it.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			inWord = true
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf(`unterminated " in %q`, s)
			}
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

var envAssign = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// goBuild is the go build command of a RUN instruction.
type goBuild struct {
	env  []string // assignments before the command, KEY=value
	args []string // after "go"
	out  string   // the -o value
	line int
}

// findGoBuild returns the stage's one RUN ... go build command.
func findGoBuild(st dockerStage) (goBuild, error) {
	var found []goBuild
	for _, in := range st.find("RUN") {
		words, err := shellWords(in.args)
		if err != nil {
			return goBuild{}, fmt.Errorf("line %d: %w", in.line, err)
		}
		// One simple command per RUN: the test reruns it verbatim.
		if slices.Contains(words, "build") && slices.ContainsFunc(words, func(w string) bool {
			return w == "&&" || w == ";" || w == "|" || w == "||"
		}) {
			return goBuild{}, fmt.Errorf("line %d: keep go build alone on its RUN line", in.line)
		}
		var b goBuild
		i := 0
		for ; i < len(words) && envAssign.MatchString(words[i]); i++ {
			b.env = append(b.env, words[i])
		}
		if i+1 >= len(words) || words[i] != "go" || words[i+1] != "build" {
			continue
		}
		b.args, b.line = words[i+1:], in.line
		for j, a := range b.args {
			if strings.Contains(a, "$") {
				return goBuild{}, fmt.Errorf("line %d: go build argument %q needs shell expansion", in.line, a)
			}
			if a == "-o" && j+1 < len(b.args) {
				b.out = b.args[j+1]
			}
		}
		found = append(found, b)
	}
	if len(found) != 1 {
		return goBuild{}, fmt.Errorf("want one RUN ... go build in stage %q, found %d", st.name, len(found))
	}
	return found[0], nil
}

// dockerfile is the parsed Dockerfile with the parts the tests look at.
type dockerfile struct {
	stages []dockerStage
	build  dockerStage // the stage the final one copies the binary from
	final  dockerStage
	cmd    goBuild
	binary string   // path of the binary in the final image
	env    []string // the final stage's ENV, KEY=value
}

// dockerfilePath is the repository's Dockerfile, seen from examples/.
const dockerfilePath = "../Dockerfile"

func loadDockerfile(t *testing.T) dockerfile {
	t.Helper()
	d, err := readDockerfile(dockerfilePath)
	if err != nil {
		t.Fatalf("%s: %v", dockerfilePath, err)
	}
	return d
}

// readDockerfile parses the Dockerfile at path. It returns an error rather
// than failing a test because the one build of the binary (ringcacheBinary)
// reads it too, outside any single test.
func readDockerfile(path string) (dockerfile, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return dockerfile{}, err
	}
	stages, err := parseDockerfile(string(text))
	if err != nil {
		return dockerfile{}, err
	}
	if len(stages) < 2 {
		return dockerfile{}, fmt.Errorf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	d := dockerfile{stages: stages, final: stages[len(stages)-1]}
	copies := d.final.find("COPY")
	for _, c := range copies {
		words := strings.Fields(c.args)
		from := ""
		var paths []string
		for _, w := range words {
			if v, ok := strings.CutPrefix(w, "--from="); ok {
				from = v
			} else if !strings.HasPrefix(w, "--") {
				paths = append(paths, w)
			}
		}
		if from == "" || len(paths) != 2 {
			continue
		}
		for i, st := range stages[:len(stages)-1] {
			if st.name == from || strconv.Itoa(i) == from {
				d.build = st
			}
		}
		if d.build.image == "" {
			return dockerfile{}, fmt.Errorf("line %d: COPY --from=%s names no earlier stage", c.line, from)
		}
		if d.cmd, err = findGoBuild(d.build); err != nil {
			return dockerfile{}, err
		}
		if paths[0] != d.cmd.out {
			return dockerfile{}, fmt.Errorf("line %d: the final stage copies %s, but go build writes %s", c.line, paths[0], d.cmd.out)
		}
		d.binary = paths[1]
	}
	if d.binary == "" {
		return dockerfile{}, fmt.Errorf("the final stage copies no binary from a build stage (COPY --from=stage src dst)")
	}
	if d.env, err = d.final.env(); err != nil {
		return dockerfile{}, err
	}
	return d, nil
}

// execForm decodes an exec-form (JSON array) instruction argument.
func execForm(t *testing.T, in dockerInstr) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(in.args), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("line %d: %s %s: want the exec form, a JSON array (a distroless image has no shell)", in.line, in.cmd, in.args)
	}
	return argv
}

func lastInstr(t *testing.T, st dockerStage, cmd string) dockerInstr {
	t.Helper()
	ins := st.find(cmd)
	if len(ins) == 0 {
		t.Fatalf("the final stage has no %s", cmd)
	}
	return ins[len(ins)-1]
}

// --- Dockerfile tests ------------------------------------------------------

func TestDockerfile(t *testing.T) {
	d := loadDockerfile(t)

	t.Run("build stage uses the go.mod release", func(t *testing.T) {
		m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(readFile(t, "../go.mod"))
		if m == nil {
			t.Fatal("go.mod has no go directive")
		}
		img, tag, _ := strings.Cut(d.build.image, ":")
		if img != "golang" || (tag != m[1] && !strings.HasPrefix(tag, m[1]+"-") && !strings.HasPrefix(tag, m[1]+".")) {
			t.Errorf("build stage FROM %s, want golang:%s[...]", d.build.image, m[1])
		}
	})

	t.Run("modules are downloaded in their own layer", func(t *testing.T) {
		at := func(match func(dockerInstr) bool) int {
			for i, in := range d.build.instrs {
				if match(in) {
					return i
				}
			}
			return -1
		}
		modCopy := at(func(in dockerInstr) bool {
			f := strings.Fields(in.args)
			return in.cmd == "COPY" && slices.Contains(f, "go.mod") && slices.Contains(f, "go.sum")
		})
		download := at(func(in dockerInstr) bool { return in.cmd == "RUN" && strings.Contains(in.args, "go mod download") })
		srcCopy := at(func(in dockerInstr) bool { return in.cmd == "COPY" && strings.HasPrefix(in.args, ". ") })
		build := at(func(in dockerInstr) bool { return in.line == d.cmd.line })
		if modCopy < 0 || download < modCopy || srcCopy < download || build < srcCopy {
			t.Errorf("want COPY go.mod go.sum (at %d) < RUN go mod download (%d) < COPY . (%d) < RUN go build (%d)",
				modCopy, download, srcCopy, build)
		}
	})

	t.Run("go build is static and stripped", func(t *testing.T) {
		env, err := d.build.env()
		if err != nil {
			t.Fatal(err)
		}
		env = append(env, d.cmd.env...)
		cgo := ""
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "CGO_ENABLED="); ok {
				cgo = v
			}
		}
		if cgo != "0" {
			t.Errorf("go build runs with CGO_ENABLED=%q, want 0 (a static binary for a libc-less image)", cgo)
		}
		if !slices.Contains(d.cmd.args, "-trimpath") {
			t.Errorf("go build %v: no -trimpath", d.cmd.args)
		}
		ld, _ := flagValue(d.cmd.args, "ldflags")
		if f := strings.Fields(ld); !slices.Contains(f, "-s") || !slices.Contains(f, "-w") {
			t.Errorf("go build -ldflags=%q: want -s -w", ld)
		}
		if pkg := d.cmd.args[len(d.cmd.args)-1]; pkg != "./cmd/ringcache" {
			t.Errorf("go build builds %s, want ./cmd/ringcache", pkg)
		}
	})

	t.Run("final stage runs as non-root", func(t *testing.T) {
		img := d.final.image
		if !strings.HasPrefix(img, "gcr.io/distroless/static") && img != "scratch" {
			t.Errorf("final stage FROM %s: want distroless/static or scratch (no libc needed, nothing extra)", img)
		}
		user := lastInstr(t, d.final, "USER").args
		uid, _, _ := strings.Cut(user, ":")
		if uid == "" || uid == "root" || uid == "0" {
			t.Errorf("USER %q: want a non-root user", user)
		}
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			// A name needs an /etc/passwd entry and hides the uid from
			// Kubernetes' runAsNonRoot check: want a number.
			t.Errorf("USER %q: want a numeric non-zero uid", user)
		}
	})

	t.Run("entrypoint and default command", func(t *testing.T) {
		ep := execForm(t, lastInstr(t, d.final, "ENTRYPOINT"))
		if len(ep) != 1 || ep[0] != d.binary {
			t.Errorf("ENTRYPOINT %q, want [%q]", ep, d.binary)
		}
		cmd := execForm(t, lastInstr(t, d.final, "CMD"))
		if cmd[0] != "serve" {
			t.Errorf("CMD %q: want serve", cmd)
		}
	})

	t.Run("healthcheck probes the admin listener the image configures", func(t *testing.T) {
		in := lastInstr(t, d.final, "HEALTHCHECK")
		m := regexp.MustCompile(`^((?:--\S+\s+)*)CMD\s+(.*)$`).FindStringSubmatch(in.args)
		if m == nil {
			t.Fatalf("HEALTHCHECK %s: want [--options] CMD [...]", in.args)
		}
		argv := execForm(t, dockerInstr{cmd: "HEALTHCHECK CMD", args: m[2], line: in.line})
		if len(argv) < 2 || argv[0] != d.binary || argv[1] != "healthcheck" {
			t.Fatalf("HEALTHCHECK CMD %q: want [%q, \"healthcheck\", ...]", argv, d.binary)
		}
		// Docker must not kill the probe before its own timeout reports.
		probeTimeout := 2 * time.Second
		if v, ok := flagValue(argv[2:], "timeout"); ok {
			var err error
			if probeTimeout, err = time.ParseDuration(v); err != nil {
				t.Fatal(err)
			}
		}
		dockerTimeout := 30 * time.Second // Docker's default
		if v, ok := flagValue(strings.Fields(m[1]), "timeout"); ok {
			var err error
			if dockerTimeout, err = time.ParseDuration(v); err != nil {
				t.Fatal(err)
			}
		}
		if dockerTimeout <= probeTimeout {
			t.Errorf("HEALTHCHECK --timeout=%s is not above the probe's own %s", dockerTimeout, probeTimeout)
		}

		// Run the probe as the container would: the binary with the
		// image's environment, the admin port moved to a live test server.
		admin := envValue(d.env, "RINGCACHE_ADMIN")
		host, _, err := net.SplitHostPort(admin)
		if err != nil {
			t.Fatalf("image RINGCACHE_ADMIN=%q: %v", admin, err)
		}
		for _, tc := range []struct {
			status, code int
		}{{fasthttp.StatusOK, 0}, {fasthttp.StatusServiceUnavailable, 1}} {
			port := portOf(healthServer(t, tc.status))
			env := append(slices.Clone(d.env), "RINGCACHE_ADMIN="+net.JoinHostPort(host, port))
			if code, stderr := runRingcache(t, argv[1:], env); code != tc.code {
				t.Errorf("/healthz %d: HEALTHCHECK exits %d, want %d (%s)", tc.status, code, tc.code, stderr)
			}
		}
	})

	t.Run("image environment is a valid configuration", func(t *testing.T) {
		cfg, err := loadConfig(nil, append(slices.Clone(d.env), "RINGCACHE_ORIGIN=http://app:9000"), io.Discard)
		if err != nil {
			t.Fatalf("config.Load with the image's ENV: %v", err)
		}
		if h, _, _ := net.SplitHostPort(cfg.Listen); h != "0.0.0.0" && h != "" && h != "::" {
			t.Errorf("image listen=%s: inside a container it must listen on every interface", cfg.Listen)
		}
		// The admin endpoints' reads need no token (/stats, /cluster):
		// open to the container network only when the operator says so.
		if h, _, _ := net.SplitHostPort(cfg.Admin); !net.ParseIP(h).IsLoopback() {
			t.Errorf("image admin=%s: want loopback unless RINGCACHE_ADMIN says otherwise", cfg.Admin)
		}
		exposed := map[string]bool{}
		for _, in := range d.final.find("EXPOSE") {
			for _, p := range strings.Fields(in.args) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				exposed[p] = true
			}
		}
		_, gossipPort, _ := net.SplitHostPort(cluster.DefaultBindAddr)
		for _, want := range []string{portOf(cfg.Listen) + "/tcp", portOf(cfg.Admin) + "/tcp", gossipPort + "/tcp", gossipPort + "/udp"} {
			if !exposed[want] {
				t.Errorf("EXPOSE lacks %s (exposed: %v)", want, exposed)
			}
		}
	})
}

// TestDockerBuildStatic builds the binary with the Dockerfile's own go
// build command and checks that it runs without a libc or a loader.
func TestDockerBuildStatic(t *testing.T) {
	out := ringcacheBinary(t) // skips with -short
	root := repoRoot(t)

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a PT_INTERP header: it needs a dynamic loader")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	for _, s := range f.Sections {
		if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug_") {
			t.Errorf("section %s present: -ldflags=-s -w did not apply", s.Name)
		}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(root+string(filepath.Separator))) {
		t.Errorf("the binary contains the build directory %s: -trimpath did not apply", root)
	}
}

func TestDockerignore(t *testing.T) {
	var patterns []string
	for _, line := range strings.Split(readFile(t, "../.dockerignore"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: exceptions (%s) are not supported by this test", line)
		}
		patterns = append(patterns, strings.Trim(filepath.ToSlash(filepath.Clean(line)), "/"))
	}
	// Docker matches a pattern against a path and each of its parents.
	var res []*regexp.Regexp
	for _, p := range patterns {
		res = append(res, ignoreRegexp(p))
	}
	ignored := func(path string) bool {
		for p := path; p != "."; p = filepath.ToSlash(filepath.Dir(p)) {
			for _, re := range res {
				if re.MatchString(p) {
					return true
				}
			}
		}
		return false
	}
	for _, want := range []string{".git/config", "bin/ringcache", "bench/results/run.json"} {
		if !ignored(want) {
			t.Errorf("%s is sent to the build context", want)
		}
	}
	// The build needs go.mod, go.sum and every non-test Go file, but for
	// examples/ (this package: a doc.go and tests), which nothing imports.
	root := repoRoot(t)
	need := []string{"go.mod", "go.sum"}
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if e.IsDir() && (rel == ".git" || rel == "bin") {
			return filepath.SkipDir
		}
		if !e.IsDir() && strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go") && !strings.HasPrefix(rel, "examples/") {
			need = append(need, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range need {
		if ignored(p) {
			t.Errorf(".dockerignore leaves %s out of the build context", p)
		}
	}
}

// ignoreRegexp turns a .dockerignore pattern into a regexp with Docker's
// meaning: * and ? stay within one path element, ** spans any number.
func ignoreRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case strings.HasPrefix(pattern[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(pattern[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}
