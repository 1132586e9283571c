// Package buildinfo says which build of ringcache is running: the module
// version, Go release and VCS revision the Go toolchain recorded in the
// binary (runtime/debug.ReadBuildInfo), for `ringcache version` and the
// ringcache_build_info metric.
//
// A build from a git checkout (go build, go install) records its revision
// and a version derived from it, such as
// v0.0.0-20261125104115-0123456789ab+dirty; a build without VCS metadata
// (-buildvcs=false, a source tree without .git as in a container build,
// a git worktree) has neither. Packagers may then set both at link time:
//
//	go build -ldflags "-X github.com/ringcache/ringcache/internal/buildinfo.version=v1.2.0 \
//	  -X github.com/ringcache/ringcache/internal/buildinfo.revision=$(git rev-parse HEAD)"
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set with -ldflags -X; they win over what the toolchain recorded.
var version, revision string

// Unknown stands for what the binary does not record.
const Unknown = "unknown"

// Info describes a build.
type Info struct {
	// Version is the main module's version: a release tag, a
	// pseudo-version from VCS, or "(devel)" when there is none.
	Version string
	// GoVersion is the Go release that built the binary (go1.26.0).
	GoVersion string
	// Revision is the VCS revision, or Unknown.
	Revision string
	// Modified reports uncommitted changes in the built tree.
	Modified bool
}

// Read returns the running binary's Info.
func Read() Info {
	i := Info{Version: "(devel)", GoVersion: runtime.Version(), Revision: Unknown}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" {
			i.Version = v
		}
		if bi.GoVersion != "" {
			i.GoVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Revision = s.Value
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
	}
	if version != "" {
		i.Version = version
	}
	if revision != "" {
		i.Revision = revision
	}
	return i
}

// String is what `ringcache version` prints:
//
//	ringcache v1.2.0 (go1.26.0 linux/amd64, revision 0123456789ab…)
func (i Info) String() string {
	rev := i.Revision
	if i.Modified {
		rev += ", modified"
	}
	return fmt.Sprintf("ringcache %s (%s %s/%s, revision %s)", i.Version, i.GoVersion, runtime.GOOS, runtime.GOARCH, rev)
}
