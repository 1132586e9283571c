package node

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ringcache/ringcache/config"
)

// accessRequest is one request of the access log tests and the body bytes
// its line must report.
type accessRequest struct {
	method, uri string
	hdr         []string
	bytes       int64
}

// accessRequests covers every way a body leaves: stored and served whole,
// HEAD, 304, too large to store (streamed with its length, and chunked),
// refused for its request body before the proxy sees it.
var accessRequests = []accessRequest{
	{"GET", "/a?size=1000&cc=max-age=60", nil, 1000},                      // miss
	{"GET", "/a?size=1000&cc=max-age=60", nil, 1000},                      // hit
	{"HEAD", "/a?size=1000&cc=max-age=60", nil, 0},                        // hit, no body
	{"GET", "/e?etag=1&cc=max-age=60", []string{"If-None-Match", "*"}, 0}, // 304
	{"GET", "/big?size=300000", nil, 300000},                              // streamed, Content-Length
	{"GET", "/big?size=300000&chunked=1", nil, 300000},                    // streamed, chunked
	{"GET", "/quote%22d?size=10", []string{"User-Agent", "agent \"x\"\t\xff"}, 10},
}

// runAccessLog starts a node with an access log in a file, sends
// accessRequests and a request whose body is too large, and returns the
// log's lines once the node is shut down.
func runAccessLog(t *testing.T, mutate func(*config.Config)) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "access.log")
	tn := startTestNode(t, func(c *config.Config) {
		c.AccessLog = path
		c.MaxObjectSize = 100 << 10 // the 300 KB bodies stream
		c.MaxRequestBody = 1 << 10
		mutate(c)
	})
	for _, r := range accessRequests {
		got := tn.do(t, r.method, tn.base+r.uri, nil, r.hdr...)
		if int64(len(got.Body)) != r.bytes {
			t.Fatalf("%s %s: %d body bytes, want %d", r.method, r.uri, len(got.Body), r.bytes)
		}
	}
	if r := tn.do(t, "POST", tn.base+"/post", make([]byte, 2<<10)); r.Status != 413 {
		t.Fatalf("POST of 2 KiB: %d, want 413", r.Status)
	}
	tn.client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Every line is written by now: a body's line once the body is, and
	// the responses arrived. Shutdown flushes them (the cleanup's second
	// Shutdown does nothing).
	if err := tn.n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != len(accessRequests)+1 {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(accessRequests)+1, data)
	}
	return lines
}

var combinedLine = regexp.MustCompile(`^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "(\S+) (\S+) HTTP/1\.1" (\d{3}) (\d+) "([^"]*)" "([^"]*)" "([^"]*)" (\d+\.\d{6})$`)

func TestAccessLogCombined(t *testing.T) {
	lines := runAccessLog(t, func(*config.Config) {})
	for i, line := range lines {
		m := combinedLine.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("line %d is not in the combined format: %q", i, line)
			continue
		}
		if i == len(accessRequests) {
			if m[1] != "POST" || m[3] != "413" {
				t.Errorf("last line %q, want the POST refused with 413", line)
			}
			continue
		}
		r := accessRequests[i]
		if m[1] != r.method || m[4] != strconv.FormatInt(r.bytes, 10) {
			t.Errorf("line %d %q: want %s with %d bytes", i, line, r.method, r.bytes)
		}
		if m[7] == "-" {
			t.Errorf("line %d %q has no Cache-Status", i, line)
		}
	}
	if m := combinedLine.FindStringSubmatch(lines[6]); m != nil && (m[2] != `/quote%22d?size=10` || m[6] != `agent \x22x\x22\x09`+"\xff") {
		t.Errorf("quotes and control bytes not escaped: %q", lines[6])
	}
}

// With log_format json and no access_log_format, every line is a JSON object.
func TestAccessLogJSON(t *testing.T) {
	lines := runAccessLog(t, func(c *config.Config) { c.LogFormat = config.LogFormatJSON })
	fields := []string{"bytes", "cache_status", "duration_seconds", "method", "proto", "referer", "remote", "status", "time", "uri", "user_agent"}
	for i, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("line %d is not JSON: %v\n%s", i, err, line)
			continue
		}
		keys := make([]string, 0, len(rec))
		for k := range rec {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !reflect.DeepEqual(keys, fields) {
			t.Errorf("line %d has fields %v, want %v", i, keys, fields)
		}
		if _, err := time.Parse(time.RFC3339Nano, rec["time"].(string)); err != nil {
			t.Errorf("line %d: time: %v", i, err)
		}
		if rec["remote"] != "127.0.0.1" || rec["proto"] != "HTTP/1.1" || rec["duration_seconds"].(float64) <= 0 {
			t.Errorf("line %d: %s", i, line)
		}
		if i == len(accessRequests) {
			if rec["method"] != "POST" || rec["status"] != 413.0 {
				t.Errorf("last line %s, want the POST refused with 413", line)
			}
			continue
		}
		r := accessRequests[i]
		if rec["method"] != r.method || rec["uri"] != r.uri || rec["bytes"] != float64(r.bytes) {
			t.Errorf("line %d %s: want %s %s with %d bytes", i, line, r.method, r.uri, r.bytes)
		}
		if cs, _ := rec["cache_status"].(string); !strings.HasPrefix(cs, "ringcache") {
			t.Errorf("line %d: cache_status %q", i, cs)
		}
	}
	var quoted map[string]any
	_ = json.Unmarshal([]byte(lines[6]), &quoted)
	if ua := quoted["user_agent"]; ua != "agent \"x\"\t\ufffd" {
		t.Errorf("user_agent %q, want the header with its invalid byte as U+FFFD", ua)
	}
}

// access_log_format wins over log_format, both ways.
func TestAccessLogFormatSetting(t *testing.T) {
	for _, tc := range []struct{ log, access, want string }{
		{"text", "", config.AccessLogCombined},
		{"json", "", config.AccessLogJSON},
		{"json", "combined", config.AccessLogCombined},
		{"text", "json", config.AccessLogJSON},
	} {
		cfg := config.Default()
		cfg.LogFormat, cfg.AccessLogFormat = tc.log, tc.access
		if got := accessLogFormat(cfg); got != tc.want {
			t.Errorf("log_format %s, access_log_format %q: %s, want %s", tc.log, tc.access, got, tc.want)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	inputs := [][]byte{nil, []byte("plain"), []byte("\"\\\x00\x1f\x7f"), []byte("é€😀"), {0xff, 'a', 0xc3}, []byte("\xed\xa0\x80")}
	for _, in := range inputs {
		out := appendJSONString(nil, in)
		var s string
		if err := json.Unmarshal(out, &s); err != nil {
			t.Errorf("%q gives %s: %v", in, out, err)
			continue
		}
		if utf8.Valid(in) && s != string(in) {
			t.Errorf("%q round-trips as %q", in, s)
		}
		if !utf8.Valid(in) && !strings.Contains(s, "\ufffd") {
			t.Errorf("%q: invalid UTF-8 not replaced: %q", in, s)
		}
	}
	if got := appendJSONString(nil, []byte("a\nb")); !bytes.Equal(got, []byte(`"a\u000ab"`)) {
		t.Errorf("newline: %s", got)
	}
}
