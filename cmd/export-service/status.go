package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/verifiedfan/export-service/ledger"
)

const statusHelp = `Usage: export-service status [flags] EXPORT_ID

The export's state in the ledger (MongoDB collection "exports"): status (running, succeeded,
failed, released, segmented, cancelled), attempts, worker, rows, bytes, object, error and
reason, times; a cancel request, and the result notices sent to the results queue.
An export split into segments over the fleet shows how many are done, running and waiting
(each segment has an entry of its own: EXPORT_ID/segment/N).

An export that is not in the ledger has not been started by any worker yet: it is still in
the jobs queue, or it died before it started (see "export-service dlq list").

Environment: MONGO_URI (required), MONGO_DATABASE (default titan).

Flags:
`

func runStatus(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stdout)
	asJSON := fs.Bool("json", false, "print the ledger entry as one JSON object")
	fs.Usage = func() { fmt.Fprint(fs.Output(), statusHelp); fs.PrintDefaults() }
	id, err := parseExportID(fs, args)
	if err != nil {
		return err
	}
	db, closeDB, err := openDatabase(ctx, getenv)
	if err != nil {
		return err
	}
	defer closeDB()
	e, err := ledger.New(db).Status(ctx, id)
	if errors.Is(err, ledger.ErrNotFound) {
		return fmt.Errorf("export %q is not in the ledger of database %q: no worker has started it yet (still queued, or dead before it started: see export-service dlq list), or the id or MONGO_DATABASE is wrong", id, db.Name())
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(e)
	}
	printStatus(stdout, e, time.Now())
	return nil
}

// parseExportID parses the flags of a command that takes exactly one EXPORT_ID (anywhere
// among them) and returns it.
func parseExportID(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		fmt.Fprintf(fs.Output(), "%s needs exactly one EXPORT_ID (got %d)\n\n", fs.Name(), len(pos))
		fs.Usage()
		return "", errUsage
	}
	return pos[0], nil
}

// parseInterspersed parses flags placed before, between and after positional arguments
// ("status ID --json"), which the flag package alone stops at. "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, errUsage
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse stopped at a positional argument, or consumed a "--".
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// openDatabase connects to MONGO_URI and returns MONGO_DATABASE (default titan).
func openDatabase(ctx context.Context, getenv func(string) string) (*mongo.Database, func(), error) {
	uri := strings.TrimSpace(getenv("MONGO_URI"))
	if uri == "" {
		return nil, nil, errors.New("MONGO_URI is not set: set it to the MongoDB connection string of the environment (and MONGO_DATABASE if it is not " + defaultDatabase + ")")
	}
	name := strings.TrimSpace(getenv("MONGO_DATABASE"))
	if name == "" {
		name = defaultDatabase
	}
	client, err := connectMongo(ctx, uri)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (is MONGO_URI right, and MongoDB reachable from here?)", err)
	}
	return client.Database(name), func() { _ = disconnectBounded(ctx, client) }, nil
}

// printStatus writes a ledger entry for a person.
func printStatus(w io.Writer, e ledger.Entry, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	row("export", "%s", e.ExportID)
	row("status", "%s", ledger.Describe(e, now))
	row("kind", "%s", e.Kind)
	row("destination", "%s", e.Destination)
	if e.Bucket != "" || e.Key != "" {
		obj := "s3://" + e.Bucket + "/" + e.Key
		if e.Status != ledger.Succeeded {
			obj += " (written only when the export succeeds)"
		}
		row("object", "%s", obj)
	}
	rows := fmt.Sprintf("%d", e.Rows)
	if e.Status == ledger.Running || e.Status == ledger.Segmented {
		rows += " so far"
		if secs := e.UpdatedAt.Sub(e.StartedAt).Seconds(); secs >= 1 && e.Rows > 0 {
			rows += fmt.Sprintf(" (%.0f rows/s)", float64(e.Rows)/secs)
		}
	}
	row("rows", "%s", rows)
	row("bytes", "%s written (%s before gzip)", humanBytes(e.Bytes), humanBytes(e.BytesUncompressed))
	if e.SHA256 != "" {
		row("sha256", "%s", e.SHA256)
	}
	if sp := e.Segments; sp != nil {
		row("segments", "%d over _id ranges (bounds by %s, %d rows when planned), parts %d each, upload %s", sp.Segments(), sp.Method, sp.Rows, sp.PartsPerSegment, sp.UploadID)
	}
	if cp := ledger.DescribeCheckpoint(e, now); cp != "" {
		row("checkpoint", "%s", cp)
	}
	if e.Resumes > 0 || e.Restarts > 0 || e.RowsReread > 0 {
		line := fmt.Sprintf("%d: %d rows not read again, at least %d rows read again", e.Resumes, e.RowsResumed, e.RowsReread)
		if e.Restarts > 0 {
			line += fmt.Sprintf("; %d start(s) over (the checkpoint's upload was gone)", e.Restarts)
		}
		row("resumes", "%s", line)
	}
	row("attempts", "%d", e.Attempts)
	if e.WorkerID != "" {
		row("worker", "%s", e.WorkerID)
	}
	if e.MessageID != "" {
		row("message", "%s", e.MessageID)
	}
	row("started", "%s", when(e.StartedAt, now))
	if !e.FinishedAt.IsZero() {
		row("finished", "%s (took %s)", when(e.FinishedAt, now), e.FinishedAt.Sub(e.StartedAt).Round(100*time.Millisecond))
	} else {
		row("updated", "%s", when(e.UpdatedAt, now))
	}
	if e.Reason != "" {
		row("reason", "%s", e.Reason)
	}
	if e.Error != "" {
		row("error", "%s", strings.ReplaceAll(e.Error, "\n", "\n\t"))
	}
	if c := e.CancelRequest; c != nil {
		row("cancel", "%s", c.Error())
	}
	for _, n := range e.Notices {
		state := "sent " + when(n.SentAt, now)
		if n.Pending {
			state = fmt.Sprintf("pending, %d failed send(s), next %s", n.Attempts, when(n.NextAt, now))
			if n.Error != "" {
				state += ": " + n.Error
			}
		}
		row("notice", "%s (%s) %s", n.Outcome, n.NoticeID, state)
	}
	_ = tw.Flush()
}

func when(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	ago := d.Round(time.Second).String() + " ago"
	if d < 0 {
		ago = "in " + (-d).Round(time.Second).String()
	}
	return t.UTC().Format(time.RFC3339) + " (" + ago + ")"
}

// humanBytes formats a byte count with a decimal unit.
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTP"[exp])
}
