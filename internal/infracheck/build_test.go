package infracheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The Dockerfile and scripts/build.sh (what the Taskfile and CI run) build the binary with the
// same flags, so what CI tests is what ships.
func TestDockerfileAndBuildScriptUseTheSameFlags(t *testing.T) {
	root := filepath.Join("..", "..")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	docker, script := read("Dockerfile"), read("scripts/build.sh")
	for _, flag := range []string{
		"CGO_ENABLED=0 go build -trimpath",
		`-ldflags "-s -w -X github.com/verifiedfan/export-service/internal/buildinfo.Version=${VERSION}"`,
		"./cmd/export-service",
	} {
		if !strings.Contains(docker, flag) {
			t.Errorf("Dockerfile lacks %s", flag)
		}
		if !strings.Contains(script, flag) {
			t.Errorf("scripts/build.sh lacks %s", flag)
		}
	}
	for _, want := range []string{"EXPOSE 8080", `HEALTHCHECK`, `"/export-service", "healthcheck"`, "USER nonroot", "distroless/static"} {
		if !strings.Contains(docker, want) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
}
