package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
)

const cancelHelp = `Usage: export-service cancel [flags] EXPORT_ID

Cancel an export: record its cancel request in the ledger (MongoDB collection "export_cancels"),
as a cancel message on the jobs queue does (docs/cancel-message.schema.json).

  - Not started yet (queued, or waiting for a retry): its message is acknowledged without
    running when a worker receives it.
  - Running: it stops within the ledger renewal interval (at most 10 s), aborts its upload (a
    split export's segments too) and writes no object and no manifest.
  - Succeeded already: nothing is cancelled (exit 1).

The ledger then says "cancelled" (export-service status), and the results queue gets a
"cancelled" notice. --wait follows it until the cancel is carried out.

Environment: MONGO_URI (required), MONGO_DATABASE (default titan).

Flags:
`

func runCancel(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("cancel", flag.ContinueOnError)
	fs.SetOutput(stdout)
	reason := fs.String("reason", "", "why, for people (recorded in the ledger and the notice; at most 500 characters)")
	by := fs.String("requested-by", "export-service-cli", "who cancels it")
	wait := fs.Bool("wait", false, "follow the export until the cancel is carried out (or the export ends otherwise)")
	timeout := fs.Duration("timeout", 10*time.Minute, "with --wait: give up (exit 3) after this long")
	poll := fs.Duration("poll", time.Second, "with --wait: how often to read the ledger")
	fs.Usage = func() { fmt.Fprint(fs.Output(), cancelHelp); fs.PrintDefaults() }
	id, err := parseExportID(fs, args)
	if err != nil {
		return err
	}
	// The same rules as a cancel message's.
	msg := jobs.CancelMessage{ExportID: id, RequestedBy: *by, Reason: *reason}
	if _, err := msg.Encode(); err != nil {
		return err
	}
	if *poll <= 0 || *timeout <= 0 {
		return errors.New("--poll and --timeout must be positive")
	}
	db, closeDB, err := openDatabase(ctx, getenv)
	if err != nil {
		return err
	}
	defer closeDB()
	l := ledger.New(db)
	e, recorded, err := l.RequestCancel(ctx, msg.ExportID, msg.RequestedBy, msg.Reason)
	if err != nil {
		return err
	}
	now := time.Now()
	switch {
	case e.Status == ledger.Succeeded:
		return fmt.Errorf("export %s already succeeded at %s (s3://%s/%s): nothing to cancel", e.ExportID, e.FinishedAt.UTC().Format(time.RFC3339), e.Bucket, e.Key)
	case e.Status == ledger.Cancelled:
		fmt.Fprintf(stdout, "export %s was cancelled already: %s\n", e.ExportID, e.Error)
		return nil
	case ledger.Ended(e):
		fmt.Fprintf(stdout, "export %s had failed for good already (%s); the cancel is recorded, so a redrive of its message does not run it\n", e.ExportID, e.Reason)
		return nil
	case !recorded:
		fmt.Fprintf(stdout, "export %s: cancel requested before\n", e.ExportID)
	case e.Status == "":
		fmt.Fprintf(stdout, "export %s: cancel requested; it has not started: its message is acknowledged without running when a worker receives it\n", e.ExportID)
	default:
		fmt.Fprintf(stdout, "export %s: cancel requested; it is %s\n", e.ExportID, ledger.Describe(e, now))
	}
	if !*wait {
		return nil
	}
	deadline := time.Now().Add(*timeout)
	t := time.NewTicker(*poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted; the cancel stands: follow it with `export-service status %s`", msg.ExportID)
		case <-t.C:
		}
		e, err := l.Status(ctx, msg.ExportID)
		switch {
		case err != nil:
			fmt.Fprintf(stdout, "reading the ledger failed (will retry): %v\n", err)
		case e.Status == ledger.Cancelled:
			fmt.Fprintf(stdout, "export %s cancelled: %s\n", e.ExportID, ledger.Describe(e, time.Now()))
			return nil
		case e.Status == ledger.Succeeded:
			return fmt.Errorf("export %s succeeded before the cancel was carried out (s3://%s/%s)", e.ExportID, e.Bucket, e.Key)
		case ledger.Ended(e):
			fmt.Fprintf(stdout, "export %s failed for good before the cancel was carried out: %s\n", e.ExportID, e.Error)
			return nil
		}
		if time.Now().After(deadline) {
			return &exitError{code: 3, err: fmt.Errorf("gave up waiting after %s; the cancel stands and is carried out when a worker handles the export: follow it with `export-service status %s`", *timeout, msg.ExportID)}
		}
	}
}
