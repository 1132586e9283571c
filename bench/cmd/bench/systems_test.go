package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestNginxConfigs(t *testing.T) {
	nginx, _ := exec.LookPath("nginx")
	if nginx == "" {
		if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
			nginx = "/usr/sbin/nginx"
		}
	}
	names := map[string]bool{}
	for i, c := range nginxConfigs() {
		if names[c.name] || !strings.HasPrefix(c.name, "nginx") {
			t.Errorf("config %d: name %q repeated or not an nginx", i, c.name)
		}
		names[c.name] = true
		dir := t.TempDir()
		path := filepath.Join(dir, "nginx.conf")
		if err := writeNginxConf(path, c, dir, "127.0.0.1:1", "127.0.0.1:2"); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		conf := string(b)
		sendfile := "sendfile off;"
		if c.Sendfile {
			sendfile = "sendfile on;"
		}
		if !strings.Contains(conf, "\n  "+sendfile+"\n") {
			t.Errorf("%s: no %q in\n%s", c.name, sendfile, conf)
		}
		for _, d := range []string{"open_file_cache max=", "output_buffers 1 128k;"} {
			if strings.Contains(conf, d) != c.Tuned {
				t.Errorf("%s (tuned %v): %q present %v", c.name, c.Tuned, d, !c.Tuned)
			}
		}
		if !strings.Contains(conf, "access_log off;") || !strings.Contains(conf, "add_header X-Cache $upstream_cache_status;") {
			t.Errorf("%s: access log or hit marker missing", c.name)
		}
		if nginx == "" {
			continue
		}
		// nginx itself must accept it.
		if out, err := exec.Command(nginx, "-t", "-q", "-c", path, "-p", dir, "-e", "stderr").CombinedOutput(); err != nil {
			t.Errorf("%s: nginx -t: %v: %s", c.name, err, out)
		}
	}
	if first := nginxConfigs()[0]; first.name != "nginx" || !first.Tuned {
		t.Errorf("the miss path and the herd use the first configuration, which must be the tuned one named nginx: %+v", first)
	}
}

func TestVarnishMask(t *testing.T) {
	m := varnishMask()
	if !strings.HasPrefix(m, "-Begin,-End,") || strings.Contains(m, ",,") || strings.Contains(m, " ") || strings.Count(m, "-") != len(varnishQuiet) {
		t.Errorf("varnishMask() = %q", m)
	}
	varnishd, _ := exec.LookPath("varnishd")
	if varnishd == "" {
		if _, err := os.Stat("/usr/sbin/varnishd"); err != nil {
			t.Skip("no varnishd to check the tags with")
		}
		varnishd = "/usr/sbin/varnishd"
	}
	// varnishd checks parameters before it compiles the VCL (-C) and exits.
	if out, err := exec.Command(varnishd, "-C", "-b", "127.0.0.1:1", "-n", t.TempDir(), "-p", "vsl_mask="+m).CombinedOutput(); err != nil {
		t.Errorf("varnishd refuses vsl_mask=%s: %v: %.300s", m, err, out)
	}
}
