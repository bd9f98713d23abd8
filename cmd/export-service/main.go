// Command export-service turns export job messages from SQS into gzipped CSV or NDJSON objects
// in S3. Run "export-service help" for its subcommands.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `export-service turns export job messages into files in S3.

Usage:
  export-service [command] [flags]

Commands:
  worker        receive and run export jobs (the default)
  indexes       create the MongoDB indexes every export kind needs (idempotent)
  healthcheck   exit 0 when the local /heartbeat answers 200 (for Docker's HEALTHCHECK)
  version       print the version

Configuration comes from environment variables; see the README.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the process exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := "worker"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "worker":
		err = runWorker(ctx, args, getenv, stdout)
	case "indexes":
		err = runIndexes(ctx, args, getenv, stdout)
	case "healthcheck":
		err = runHealthcheck(ctx, args, getenv, stdout)
	case "version":
		err = runVersion(args, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "export-service: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		if err == errUsage {
			return 2
		}
		fmt.Fprintf(stderr, "export-service %s: %v\n", cmd, err)
		return 1
	}
	return 0
}
