package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	i := Read()
	if i.Version == "" || i.Revision == "" {
		t.Errorf("empty fields in %+v: want (devel) and unknown at worst", i)
	}
	if i.GoVersion != runtime.Version() {
		t.Errorf("GoVersion %q, want %q", i.GoVersion, runtime.Version())
	}
	defer func(v, r string) { version, revision = v, r }(version, revision)
	version, revision = "v1.2.3", "0123456789abcdef"
	i = Read()
	if i.Version != "v1.2.3" || i.Revision != "0123456789abcdef" {
		t.Errorf("link-time values not used: %+v", i)
	}
	if s := i.String(); !strings.HasPrefix(s, "ringcache v1.2.3 ("+runtime.Version()+" ") || !strings.HasSuffix(s, "revision 0123456789abcdef)") {
		t.Errorf("String() = %q", s)
	}
}
