package main

// Tests of the container packaging, runnable without a Docker engine: the
// Dockerfile's structure and its go build command (which must give a static
// binary), .dockerignore, and the Compose and Kubernetes examples checked
// against the real configuration loader.

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cluster"
	"github.com/ringcache/ringcache/config"
	"github.com/valyala/fasthttp"
	"go.yaml.in/yaml/v3"
)

// repoRoot is the module root, seen from this package's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	return root
}

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

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

// flagValue returns the value of -name (given as "-name v" or "-name=v").
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		for _, p := range []string{"-" + name, "--" + name} {
			if a == p && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v, true
			}
		}
	}
	return "", false
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

func loadDockerfile(t *testing.T) dockerfile {
	t.Helper()
	stages, err := parseDockerfile(readRepoFile(t, "Dockerfile"))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and a runtime stage", len(stages))
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
			t.Fatalf("line %d: COPY --from=%s names no earlier stage", c.line, from)
		}
		if d.cmd, err = findGoBuild(d.build); err != nil {
			t.Fatalf("Dockerfile: %v", err)
		}
		if paths[0] != d.cmd.out {
			t.Fatalf("line %d: the final stage copies %s, but go build writes %s", c.line, paths[0], d.cmd.out)
		}
		d.binary = paths[1]
	}
	if d.binary == "" {
		t.Fatal("the final stage copies no binary from a build stage (COPY --from=stage src dst)")
	}
	if d.env, err = d.final.env(); err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return d
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
		m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(readRepoFile(t, "go.mod"))
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

		// Run the probe as the container would: the image's environment,
		// with the admin port moved to a live test server.
		admin := envValue(d.env, "RINGCACHE_ADMIN")
		host, _, err := net.SplitHostPort(admin)
		if err != nil {
			t.Fatalf("image RINGCACHE_ADMIN=%q: %v", admin, err)
		}
		for _, tc := range []struct {
			status, code int
		}{{fasthttp.StatusOK, 0}, {fasthttp.StatusServiceUnavailable, 1}} {
			srv := healthServer(t, tc.status)
			_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv, "http://"))
			env := append(slices.Clone(d.env), "RINGCACHE_ADMIN="+net.JoinHostPort(host, port))
			var stderr bytes.Buffer
			if code := run(context.Background(), argv[1:], env, io.Discard, &stderr); code != tc.code {
				t.Errorf("/healthz %d: HEALTHCHECK exits %d, want %d (%s)", tc.status, code, tc.code, stderr.String())
			}
		}
	})

	t.Run("image environment is a valid configuration", func(t *testing.T) {
		cfg, err := config.Load(nil, append(slices.Clone(d.env), "RINGCACHE_ORIGIN=http://app:9000"), io.Discard)
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

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// TestDockerBuildStatic builds the binary with the Dockerfile's own go
// build command and checks that it runs without a libc or a loader.
func TestDockerBuildStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	d := loadDockerfile(t)
	root := repoRoot(t)
	out := filepath.Join(t.TempDir(), "ringcache")
	args := slices.Clone(d.cmd.args)
	for i := range args {
		if args[i] == "-o" && i+1 < len(args) {
			args[i+1] = out
		}
	}
	stageEnv, err := d.build.env()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), stageEnv...), d.cmd.env...) // later entries win
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}

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
	for _, line := range strings.Split(readRepoFile(t, ".dockerignore"), "\n") {
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
	// The build needs go.mod, go.sum and every non-test Go file.
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

// --- examples --------------------------------------------------------------

// imageEnv is the environment every container of the image starts with.
func imageEnv(t *testing.T) []string {
	t.Helper()
	return loadDockerfile(t).env
}

// newSecret returns a value valid as a peer secret, a gossip key and an
// admin token: what the examples' instructions generate.
func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.StdEncoding.EncodeToString(b)
}

// listenFlag returns the --listen value of a demo origin command line.
func listenFlag(t *testing.T, args []string) string {
	t.Helper()
	if len(args) == 0 || args[0] != "origin" {
		t.Fatalf("app command %q: want the demo origin", args)
	}
	v, ok := flagValue(args[1:], "listen")
	if !ok {
		t.Fatalf("app command %q: no --listen", args)
	}
	return v
}

// checkAppHealthcheck runs argv (a ringcache healthcheck command line for a
// demo origin listening on listen) against a live demo origin.
func checkAppHealthcheck(t *testing.T, argv []string, listen string) {
	t.Helper()
	if len(argv) < 2 || argv[1] != "healthcheck" {
		t.Fatalf("healthcheck %q: want [binary healthcheck --url ...]", argv)
	}
	raw, ok := flagValue(argv[2:], "url")
	if !ok {
		t.Fatalf("healthcheck %q: the app has no admin listener; pass --url", argv)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if portOf(u.Host) != portOf(listen) {
		t.Errorf("app healthcheck probes %s, but the app listens on %s", u.Host, listen)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, done := startOrigin(ln, slog.New(slog.DiscardHandler))
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	u.Host = ln.Addr().String()
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"healthcheck", "--url", u.String()}, nil, io.Discard, &stderr); code != 0 {
		t.Errorf("app healthcheck against a demo origin exits %d: %s", code, stderr.String())
	}
}

// composeNetworks is a service's networks: a list of names or a map.
type composeNetworks map[string]composeAttachment

type composeAttachment struct {
	IPv4 string `yaml:"ipv4_address"`
}

func (n *composeNetworks) UnmarshalYAML(v *yaml.Node) error {
	if v.Kind == yaml.SequenceNode {
		var names []string
		if err := v.Decode(&names); err != nil {
			return err
		}
		*n = composeNetworks{}
		for _, name := range names {
			(*n)[name] = composeAttachment{}
		}
		return nil
	}
	var m map[string]composeAttachment
	if err := v.Decode(&m); err != nil {
		return err
	}
	*n = m
	return nil
}

type composeService struct {
	Image           string            `yaml:"image"`
	Command         []string          `yaml:"command"`
	Environment     map[string]string `yaml:"environment"`
	Networks        composeNetworks   `yaml:"networks"`
	Ports           []string          `yaml:"ports"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	Healthcheck     struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
}

// interpolation is Compose's ${NAME}, ${NAME:?message} and friends.
var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}`)

func TestComposeExample(t *testing.T) {
	var cf composeFile
	if err := yaml.Unmarshal([]byte(readRepoFile(t, "examples/compose/compose.yaml")), &cf); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	base := imageEnv(t)

	type node struct {
		service string
		svc     composeService
		cfg     config.Config
	}
	var nodes []node
	for _, name := range slices.Sorted(maps.Keys(cf.Services)) {
		svc := cf.Services[name]
		if len(svc.Command) == 0 || svc.Command[0] != "serve" {
			continue
		}
		env := slices.Clone(base)
		for k, v := range svc.Environment {
			for _, m := range interpolation.FindAllStringSubmatch(v, -1) {
				if !strings.HasPrefix(m[2], ":?") {
					t.Errorf("%s: %s=%s: a missing secret must stop compose (${%s:?message})", name, k, v, m[1])
				}
			}
			env = append(env, k+"="+interpolation.ReplaceAllStringFunc(v, func(string) string { return newSecret() }))
		}
		cfg, err := config.Load(nil, env, io.Discard)
		if err != nil {
			t.Errorf("service %s: its environment is not a valid configuration: %v", name, err)
			continue
		}
		nodes = append(nodes, node{name, svc, cfg})
	}
	if len(nodes) != 3 {
		t.Fatalf("%d valid ringcache services (command serve), want 3", len(nodes))
	}

	byService := map[string]node{}
	names := map[string]bool{}
	published := 0
	for _, n := range nodes {
		byService[n.service] = n
		if names[n.cfg.NodeName] {
			t.Errorf("node name %s used twice", n.cfg.NodeName)
		}
		names[n.cfg.NodeName] = true
		if len(n.svc.Ports) > 0 {
			published++
		}
		for _, p := range n.svc.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %s beyond the host's loopback", n.service, p)
			}
		}
	}
	if published != 1 {
		t.Errorf("%d ringcache services publish ports, want 1", published)
	}

	for _, n := range nodes {
		t.Run(n.service, func(t *testing.T) {
			if n.cfg.Gossip == "" {
				t.Fatal("no RINGCACHE_GOSSIP: the node would run alone")
			}
			// cluster.Options accepts only an IP address to advertise, and
			// without one a node on 0.0.0.0 publishes an unusable peer address.
			adv, err := netip.ParseAddrPort(n.cfg.Advertise)
			if err != nil {
				t.Fatalf("RINGCACHE_ADVERTISE=%q: want IP:port: %v", n.cfg.Advertise, err)
			}
			onNet := false
			for netName, att := range n.svc.Networks {
				if att.IPv4 != adv.Addr().String() {
					continue
				}
				for _, c := range cf.Networks[netName].IPAM.Config {
					if p, err := netip.ParsePrefix(c.Subnet); err == nil && p.Contains(adv.Addr()) {
						onNet = true
					}
				}
			}
			if !onNet {
				t.Errorf("advertised %s is not this service's ipv4_address within its network's subnet", adv.Addr())
			}
			if portOf(n.cfg.Advertise) != portOf(n.cfg.Gossip) {
				t.Errorf("advertise %s and gossip %s differ in port", n.cfg.Advertise, n.cfg.Gossip)
			}

			o, err := url.Parse(n.cfg.Origin)
			if err != nil {
				t.Fatal(err)
			}
			app, ok := cf.Services[o.Hostname()]
			if !ok {
				t.Fatalf("origin %s names no service", n.cfg.Origin)
			}
			listen := listenFlag(t, app.Command)
			if o.Port() != portOf(listen) {
				t.Errorf("origin %s, but the app listens on %s", n.cfg.Origin, listen)
			}

			if d, err := time.ParseDuration(n.svc.StopGracePeriod); err != nil || d <= n.cfg.ShutdownTimeout {
				t.Errorf("stop_grace_period %q: want more than shutdown_timeout %s", n.svc.StopGracePeriod, n.cfg.ShutdownTimeout)
			}

			for _, j := range n.cfg.Join {
				host, p, _ := net.SplitHostPort(j)
				target, ok := byService[host]
				switch {
				case !ok:
					t.Errorf("join %s names no ringcache service", j)
				case host == n.service:
					t.Errorf("join %s is the node itself", j)
				case p != portOf(target.cfg.Gossip):
					t.Errorf("join %s, but %s gossips on %s", j, host, target.cfg.Gossip)
				}
			}
		})
	}

	// Following joins from any node must reach every other: one cluster.
	parent := map[string]string{}
	var findRoot func(string) string
	findRoot = func(s string) string {
		if p, ok := parent[s]; ok && p != s {
			return findRoot(p)
		}
		return s
	}
	for _, n := range nodes {
		for _, j := range n.cfg.Join {
			host, _, _ := net.SplitHostPort(j)
			if _, ok := byService[host]; ok {
				parent[findRoot(n.service)] = findRoot(host)
			}
		}
	}
	for _, n := range nodes[1:] {
		if findRoot(n.service) != findRoot(nodes[0].service) {
			t.Errorf("%s and %s never join each other's cluster", n.service, nodes[0].service)
		}
	}

	t.Run("app", func(t *testing.T) {
		o, _ := url.Parse(nodes[0].cfg.Origin)
		app := cf.Services[o.Hostname()]
		if len(app.Healthcheck.Test) < 2 || app.Healthcheck.Test[0] != "CMD" {
			t.Fatalf("app healthcheck %q: want [CMD /ringcache healthcheck --url ...] (the image's own probes an admin port the origin lacks)", app.Healthcheck.Test)
		}
		checkAppHealthcheck(t, app.Healthcheck.Test[1:], listenFlag(t, app.Command))
	})
}

// Kubernetes objects, reduced to the fields the test reads.
type k8sEnvVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sSecurity struct {
	RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
	RunAsUser                *int  `yaml:"runAsUser"`
	ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
}

type k8sContainer struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	Env            []k8sEnvVar `yaml:"env"`
	ReadinessProbe *k8sProbe   `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe   `yaml:"livenessProbe"`
	Lifecycle      struct {
		PreStop struct {
			Sleep struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	SecurityContext k8sSecurity `yaml:"securityContext"`
}

type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		// Service
		ClusterIP                string         `yaml:"clusterIP"`
		PublishNotReadyAddresses bool           `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]any `yaml:"selector"` // Deployment: matchLabels
		Ports                    []struct {
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
			Protocol   string `yaml:"protocol"`
		} `yaml:"ports"`
		// Deployment
		Replicas int `yaml:"replicas"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds *int           `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               k8sSecurity    `yaml:"securityContext"`
				Containers                    []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// The downward API values the test pretends the pod has.
var k8sFields = map[string]string{
	"status.podIP":       "10.244.1.7",
	"metadata.name":      "web-5d9c7b-x2x9q",
	"metadata.namespace": "default",
}

var k8sVarRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// k8sEnv resolves a container's env as the kubelet does: $(VAR) expands
// variables defined earlier in the list; secret values come from secret.
func k8sEnv(t *testing.T, env []k8sEnvVar, secrets map[string]k8sObject, secret func(name, key string) string) []string {
	t.Helper()
	var out []string
	defined := map[string]string{}
	for _, e := range env {
		v := e.Value
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			var ok bool
			if v, ok = k8sFields[e.ValueFrom.FieldRef.FieldPath]; !ok {
				t.Fatalf("env %s: unexpected fieldPath %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, ok := secrets[ref.Name]
			if !ok {
				t.Fatalf("env %s: no Secret %s in the manifest", e.Name, ref.Name)
			}
			if _, ok := s.StringData[ref.Key]; !ok {
				t.Fatalf("env %s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			v = secret(ref.Name, ref.Key)
		default:
			// The kubelet leaves an unknown $(VAR) as it is: a silent bug.
			for _, m := range k8sVarRef.FindAllStringSubmatch(v, -1) {
				if _, ok := defined[m[1]]; !ok {
					t.Errorf("env %s=%s: $(%s) is not defined earlier in env", e.Name, v, m[1])
				}
			}
			v = k8sVarRef.ReplaceAllStringFunc(v, func(ref string) string {
				return defined[ref[2:len(ref)-1]]
			})
		}
		defined[e.Name] = v
		out = append(out, e.Name+"="+v)
	}
	return out
}

// containerPort resolves a probe's or Service's port (number or name).
func containerPort(t *testing.T, c k8sContainer, p any) int {
	t.Helper()
	switch p := p.(type) {
	case int:
		return p
	case string:
		for _, cp := range c.Ports {
			if cp.Name == p {
				return cp.ContainerPort
			}
		}
		t.Fatalf("container %s has no port named %q", c.Name, p)
	}
	t.Fatalf("port %v: want a number or a name", p)
	return 0
}

func TestKubernetesExample(t *testing.T) {
	dec := yaml.NewDecoder(strings.NewReader(readRepoFile(t, "examples/kubernetes/ringcache-sidecar.yaml")))
	var objs []k8sObject
	for range 100 { // bounded: the file holds a handful of objects
		var o k8sObject
		err := dec.Decode(&o)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("ringcache-sidecar.yaml: %v", err)
		}
		objs = append(objs, o)
	}
	secrets := map[string]k8sObject{}
	var services, deployments []k8sObject
	for _, o := range objs {
		switch o.Kind {
		case "Secret":
			secrets[o.Metadata.Name] = o
		case "Service":
			services = append(services, o)
		case "Deployment":
			deployments = append(deployments, o)
		}
	}
	if len(deployments) != 1 {
		t.Fatalf("%d Deployments, want 1", len(deployments))
	}
	dep := deployments[0]
	pod := dep.Spec.Template.Spec
	labels := dep.Spec.Template.Metadata.Labels
	if dep.Spec.Replicas != 3 {
		t.Errorf("replicas %d, want 3", dep.Spec.Replicas)
	}
	selects := func(sel map[string]any) bool {
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	if ml, _ := dep.Spec.Selector["matchLabels"].(map[string]any); !selects(ml) {
		t.Errorf("Deployment selector %v does not match its pod labels %v", dep.Spec.Selector, labels)
	}

	var rc, app *k8sContainer
	for i := range pod.Containers {
		c := &pod.Containers[i]
		switch {
		case len(c.Args) > 0 && c.Args[0] == "serve":
			rc = c
		case len(c.Args) > 0 && c.Args[0] == "origin":
			app = c
		}
	}
	if rc == nil || app == nil {
		t.Fatalf("want an app container (origin) and a ringcache sidecar (serve) in one pod, got %d containers", len(pod.Containers))
	}

	env := append(imageEnv(t), k8sEnv(t, rc.Env, secrets, func(string, string) string { return newSecret() })...)
	cfg, err := config.Load(nil, env, io.Discard)
	if err != nil {
		t.Fatalf("the sidecar's environment is not a valid configuration: %v", err)
	}

	t.Run("placeholder secrets are refused", func(t *testing.T) {
		env := append(imageEnv(t), k8sEnv(t, rc.Env, secrets, func(name, key string) string { return secrets[name].StringData[key] })...)
		_, err := config.Load(nil, env, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "peer_secret") || !strings.Contains(err.Error(), "gossip_key") {
			t.Errorf("with the manifest's placeholder secrets config.Load says %v; want peer_secret and gossip_key refused", err)
		}
	})

	t.Run("membership", func(t *testing.T) {
		if cfg.NodeName != k8sFields["metadata.name"] {
			t.Errorf("node name %q, want the pod name from the downward API", cfg.NodeName)
		}
		if cfg.Gossip == "" {
			t.Fatal("no gossip address: every pod would run alone")
		}
		// An IP, as cluster.Options requires: the pod's own.
		if want := net.JoinHostPort(k8sFields["status.podIP"], portOf(cfg.Gossip)); cfg.Advertise != want {
			t.Errorf("advertise %q, want %q (status.podIP and the gossip port)", cfg.Advertise, want)
		}
		var headless []k8sObject
		for _, s := range services {
			if s.Spec.ClusterIP == "None" {
				headless = append(headless, s)
			}
		}
		if len(cfg.Join) == 0 {
			t.Fatal("no join address")
		}
		for _, j := range cfg.Join {
			host, p, _ := net.SplitHostPort(j)
			label, _, _ := strings.Cut(host, ".")
			var svc *k8sObject
			for i := range headless {
				if headless[i].Metadata.Name == label {
					svc = &headless[i]
				}
			}
			if svc == nil {
				t.Errorf("join %s names no headless Service (clusterIP: None)", j)
				continue
			}
			if !svc.Spec.PublishNotReadyAddresses {
				t.Errorf("Service %s: publishNotReadyAddresses must be true, or starting pods cannot find each other", label)
			}
			if !selects(svc.Spec.Selector) {
				t.Errorf("Service %s selector %v does not select the pods %v", label, svc.Spec.Selector, labels)
			}
			protos := map[string]bool{}
			for _, sp := range svc.Spec.Ports {
				if strconv.Itoa(sp.Port) == p {
					protos[orDefault(sp.Protocol, "TCP")] = true
				}
			}
			if !protos["TCP"] || !protos["UDP"] {
				t.Errorf("Service %s: want port %s over TCP and UDP (serf uses both), got %v", label, p, protos)
			}
			if p != portOf(cfg.Gossip) {
				t.Errorf("join port %s, but the sidecar gossips on %s", p, cfg.Gossip)
			}
		}
		ports := map[string]bool{}
		for _, cp := range rc.Ports {
			ports[strconv.Itoa(cp.ContainerPort)+"/"+orDefault(cp.Protocol, "TCP")] = true
		}
		for _, want := range []string{portOf(cfg.Listen) + "/TCP", portOf(cfg.Admin) + "/TCP", portOf(cfg.Gossip) + "/TCP", portOf(cfg.Gossip) + "/UDP"} {
			if !ports[want] {
				t.Errorf("sidecar container ports lack %s", want)
			}
		}
	})

	t.Run("app behind the sidecar", func(t *testing.T) {
		listen := listenFlag(t, app.Args)
		o, err := url.Parse(cfg.Origin)
		if err != nil {
			t.Fatal(err)
		}
		if ip := net.ParseIP(o.Hostname()); ip == nil || !ip.IsLoopback() || o.Port() != portOf(listen) {
			t.Errorf("origin %s: want the app container on the pod's loopback, %s", cfg.Origin, listen)
		}
		for _, s := range services {
			if s.Spec.ClusterIP == "None" {
				continue
			}
			for _, sp := range s.Spec.Ports {
				if got := containerPort(t, *rc, sp.TargetPort); strconv.Itoa(got) != portOf(cfg.Listen) {
					t.Errorf("Service %s sends clients to port %d, not the cache's %s", s.Metadata.Name, got, cfg.Listen)
				}
			}
		}
	})

	t.Run("probes on the admin /healthz", func(t *testing.T) {
		for name, p := range map[string]*k8sProbe{"readiness": rc.ReadinessProbe, "liveness": rc.LivenessProbe} {
			if p == nil || p.HTTPGet == nil {
				t.Errorf("no %s httpGet probe", name)
				continue
			}
			if got := containerPort(t, *rc, p.HTTPGet.Port); p.HTTPGet.Path != "/healthz" || strconv.Itoa(got) != portOf(cfg.Admin) {
				t.Errorf("%s probe GET :%d%s, want :%s/healthz", name, got, p.HTTPGet.Path, portOf(cfg.Admin))
			}
		}
		// The kubelet probes the pod IP: a loopback admin listener (the
		// image's default) would fail every probe.
		if h, _, _ := net.SplitHostPort(cfg.Admin); net.ParseIP(h).IsLoopback() {
			t.Errorf("admin=%s: the kubelet cannot probe a loopback listener; set RINGCACHE_ADMIN", cfg.Admin)
		}
	})

	t.Run("termination leaves time for handoff", func(t *testing.T) {
		// serf's leave broadcast and propagation delay come on top of
		// shutdown_timeout (cluster.Membership.Leave).
		const leave = 6 * time.Second
		if pod.TerminationGracePeriodSeconds == nil {
			t.Fatal("terminationGracePeriodSeconds unset (30 s default)")
		}
		grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		preStop := time.Duration(rc.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		if need := preStop + cfg.ShutdownTimeout + leave; grace < need {
			t.Errorf("terminationGracePeriodSeconds %s < preStop %s + shutdown_timeout %s + leave %s", grace, preStop, cfg.ShutdownTimeout, leave)
		}
		appStop := time.Duration(app.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		if appStop < preStop+cfg.ShutdownTimeout || appStop >= grace {
			t.Errorf("app preStop %s: want the app to outlive the cache's drain (%s) within the grace period %s", appStop, preStop+cfg.ShutdownTimeout, grace)
		}
	})

	t.Run("security context", func(t *testing.T) {
		if sc := pod.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Error("pod securityContext.runAsNonRoot is not true")
		}
		for _, c := range pod.Containers {
			sc := c.SecurityContext
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
			}
		}
	})
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
