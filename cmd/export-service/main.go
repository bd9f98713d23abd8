// Command export-service turns export job messages from SQS into gzipped CSV or NDJSON objects
// in S3. Run "export-service help" for its subcommands.
package main

import (
	"context"
	"errors"
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
  enqueue       build, validate and send an export job; --wait follows it to the end
  status        an export's state in the ledger: status EXPORT_ID
  cancel        cancel an export: cancel EXPORT_ID (--wait follows it until it stopped)
  dlq list      the dead-letter queue's messages and why they died (deletes nothing)
  dlq redrive   move dead-letter messages back to the jobs queue (--dry-run first)
  healthcheck   exit 0 when the local /heartbeat answers 200 (for Docker's HEALTHCHECK)
  version       print the version

"export-service COMMAND --help" shows a command's flags. Configuration comes from environment
variables; see the README.

Exit codes: 0 done, 1 failed, 2 bad usage, 3 --wait gave up (--timeout; enqueue, cancel).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the process exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := "worker"
	if len(args) > 0 && args[0] != "" && (args[0][0] != '-' || args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "worker":
		err = runWorker(ctx, args, getenv, stdout)
	case "indexes":
		err = runIndexes(ctx, args, getenv, stdout)
	case "enqueue":
		err = runEnqueue(ctx, args, getenv, stdout, stderr)
	case "status":
		err = runStatus(ctx, args, getenv, stdout)
	case "cancel":
		err = runCancel(ctx, args, getenv, stdout)
	case "dlq":
		err = runDLQ(ctx, args, getenv, stdout, stderr)
	case "healthcheck":
		err = runHealthcheck(ctx, args, getenv, stdout)
	case "version":
		err = runVersion(args, stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "export-service: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	var ec *exitError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.As(err, &ec):
		fmt.Fprintf(stderr, "export-service %s: %v\n", cmd, ec.err)
		return ec.code
	default:
		fmt.Fprintf(stderr, "export-service %s: %v\n", cmd, err)
		return 1
	}
}

// errHelp means --help was asked for and printed: the command must not run.
var errHelp = errors.New("help")

// exitError is an error with an exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
