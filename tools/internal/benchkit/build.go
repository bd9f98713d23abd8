package benchkit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build builds the worker (./cmd/export-service of repo) into dir as scripts/build.sh does
// (static, -trimpath), but keeps the symbol table (no -s -w) so that perf can name functions;
// neither changes the code that runs. Its version is `git describe` of repo, else name. With
// rev, it builds that commit's files (git archive into dir/src), not the working tree, and its
// version is name-<short rev>. It returns the binary's path and the version it was given.
func Build(ctx context.Context, repo, rev, dir, name string) (bin, version string, err error) {
	out := filepath.Join(dir, "export-service")
	version = name
	if b, err := exec.CommandContext(ctx, "git", "-C", repo, "describe", "--tags", "--always", "--dirty").Output(); err == nil {
		version = strings.TrimSpace(string(b))
	}
	if rev != "" {
		src := filepath.Join(dir, "src")
		if err := os.MkdirAll(src, 0o755); err != nil {
			return "", "", err
		}
		sh := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", repo, rev, src)
		if b, err := sh.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("git archive %s: %v\n%s", rev, err, b)
		}
		b, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--short", rev).Output()
		if err != nil {
			return "", "", err
		}
		version = name + "-" + strings.TrimSpace(string(b))
		repo = src
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-X github.com/verifiedfan/export-service/internal/buildinfo.Version="+version,
		"-o", out, "./cmd/export-service")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build: %v\n%s", err, b)
	}
	return out, version, nil
}

// BinaryVersion is what `bin version` prints, trimmed.
func BinaryVersion(ctx context.Context, bin string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return "", fmt.Errorf("%s version: %v", bin, err)
	}
	return strings.TrimSpace(string(out)), nil
}
