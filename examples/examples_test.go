package examples

// Helpers shared by the Dockerfile, Compose and Kubernetes tests: the
// repository's files, the ringcache binary built as the image builds it, and
// the processes and servers the checks run it against.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringcache/ringcache/config"
	"github.com/valyala/fasthttp"
)

// binDir holds the binary the tests build; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ringcache-examples-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "examples: %v\n", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// repoRoot is the module root, seen from this package's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	return root
}

// readFile reads name, a slash-separated path relative to examples/.
func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// --- the binary ------------------------------------------------------------

// built is the outcome of the one build per test process.
var built struct {
	once sync.Once
	path string
	skip string // why the build cannot run here
	err  error
}

// ringcacheBinary returns the ringcache binary, built on first use with the
// Dockerfile's own go build command (for this machine's platform): the
// image's binary, as far as a test can get it without Docker.
func ringcacheBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	built.once.Do(func() { built.path, built.skip, built.err = buildRingcache() })
	if built.skip != "" {
		t.Skip(built.skip)
	}
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// buildRingcache reruns the Dockerfile's go build line with the build
// stage's ENV, writing the binary into binDir instead of the -o path.
func buildRingcache() (path, skip string, err error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", "no go command on PATH", nil
	}
	d, err := readDockerfile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		return "", "", fmt.Errorf("../Dockerfile: %w", err)
	}
	root, err := filepath.Abs("..") // the Dockerfile builds from the context's root
	if err != nil {
		return "", "", err
	}
	out := filepath.Join(binDir, "ringcache")
	args := slices.Clone(d.cmd.args)
	for i := range args {
		if args[i] == "-o" && i+1 < len(args) {
			args[i+1] = out
		}
	}
	stageEnv, err := d.build.env()
	if err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), stageEnv...), d.cmd.env...) // later entries win
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out, "", nil
}

// runTimeout bounds one run of a short-lived subcommand (healthcheck).
const runTimeout = 30 * time.Second

// runRingcache runs the binary with args and exactly env (nothing
// inherited from the test, as in a container) and returns its exit status
// and what it wrote to stderr.
func runRingcache(t *testing.T, args, env []string) (int, string) {
	t.Helper()
	bin := ringcacheBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{}, env...) // nil would inherit the test's environment
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("ringcache %s did not exit within %s: %s", strings.Join(args, " "), runTimeout, stderr.String())
	case errors.As(err, &exit):
		return exit.ExitCode(), stderr.String()
	case err != nil:
		t.Fatalf("ringcache %s: %v", strings.Join(args, " "), err)
	}
	return 0, stderr.String()
}

// startTimeout bounds the wait for a started process to report its address.
const startTimeout = 30 * time.Second

// startApp runs the binary with an example's app command line (the demo
// origin) until the test ends, listening on 127.0.0.1:0 instead of its own
// --listen, and returns the address the origin reports in its log.
func startApp(t *testing.T, args []string) string {
	t.Helper()
	args, ok := setFlag(args, "listen", "127.0.0.1:0")
	if !ok {
		t.Fatalf("app command %q: no --listen", args)
	}
	return startRingcache(t, args, nil, originServing)
}

// startRingcache runs the binary with args and exactly env until the test
// ends, and returns the first submatch of match in its log, once there.
func startRingcache(t *testing.T, args, env []string, match *regexp.Regexp) string {
	t.Helper()
	bin := ringcacheBinary(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{}, env...) // nil would inherit the test's environment
	// Stop it as docker stop does; kill it if it does not go.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	log := &logWatch{match: match, found: make(chan string, 1)}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("ringcache %s: %v", strings.Join(args, " "), err)
	}
	var waitErr error
	exited := make(chan struct{}) // closed once waitErr is set
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited // bounded by WaitDelay
	})
	select {
	case addr := <-log.found:
		return addr
	case <-exited:
		t.Fatalf("ringcache %s exited before serving (%v): %s", strings.Join(args, " "), waitErr, log)
	case <-time.After(startTimeout):
		t.Fatalf("ringcache %s reported no address within %s: %s", strings.Join(args, " "), startTimeout, log)
	}
	return ""
}

// originServing finds the address in the demo origin's "serving" log line
// (slog's text format).
var originServing = regexp.MustCompile(`msg="demo origin serving".* listen=(\S+)`)

// logWatch collects a process's log and sends the first submatch of match
// found in a complete line on found.
type logWatch struct {
	match *regexp.Regexp
	found chan string // buffered, one value

	mu   sync.Mutex
	buf  bytes.Buffer
	scan int // buf offset up to which complete lines were matched
	sent bool
}

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for !w.sent {
		rest := w.buf.Bytes()[w.scan:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		if m := w.match.FindSubmatch(rest[:i]); m != nil {
			w.found <- string(m[1])
			w.sent = true
		}
		w.scan += i + 1
	}
	return len(p), nil
}

func (w *logWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// healthServer answers status on /healthz at 127.0.0.1:0 until the test
// ends, and returns its address.
func healthServer(t *testing.T, status int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) != "/healthz" {
			ctx.Error("not found\n", fasthttp.StatusNotFound)
			return
		}
		ctx.SetStatusCode(status)
		ctx.SetBodyString("state\n")
	}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.ShutdownWithContext(ctx)
		<-done
	})
	return ln.Addr().String()
}

// --- small helpers -----------------------------------------------------------

// loadConfig is config.Load for an example's settings, which must not
// draw warnings (an unknown RINGCACHE_* variable is one, and most likely a
// misspelt setting): a warning is returned as an error.
func loadConfig(args, env []string, out io.Writer) (config.Config, error) {
	cfg, warnings, err := config.Load(args, env, out)
	if err == nil && len(warnings) > 0 {
		err = fmt.Errorf("warnings: %s", strings.Join(warnings, "; "))
	}
	return cfg, err
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

// setFlag returns a copy of args with the value of -name (in any form
// flagValue reads) replaced by value, and whether args had the flag.
func setFlag(args []string, name, value string) ([]string, bool) {
	out := slices.Clone(args)
	found := false
	for i, a := range out {
		for _, p := range []string{"-" + name, "--" + name} {
			if a == p && i+1 < len(out) {
				out[i+1] = value
				found = true
			}
			if strings.HasPrefix(a, p+"=") {
				out[i] = p + "=" + value
				found = true
			}
		}
	}
	return out, found
}

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
