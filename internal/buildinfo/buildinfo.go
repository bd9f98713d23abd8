// Package buildinfo holds the version stamped into the binary at build time.
package buildinfo

import "runtime/debug"

// Version is set with -ldflags "-X github.com/verifiedfan/export-service/internal/buildinfo.Version=v1.2.3".
// Without it, the module version or VCS revision recorded by the Go toolchain is used.
var Version = ""

// String returns the best version string available.
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}
