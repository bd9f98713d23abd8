package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/buildinfo"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
)

// errUsage means the flag package already printed what was wrong.
var errUsage = errors.New("usage")

func newFlagSet(name, help string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: export-service %s [flags]\n\n%s\n", name, help)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		fs.Usage()
		return errUsage
	}
	return nil
}

func runVersion(args []string, stdout io.Writer) error {
	fs := newFlagSet("version", "Print the version.", stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "export-service %s (%s)\n", buildinfo.String(), runtime.Version())
	return nil
}

func runHealthcheck(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := newFlagSet("healthcheck", "Exit 0 when GET /heartbeat of the local worker answers 200.", stdout)
	def := getenv("HEALTHCHECK_URL")
	if def == "" {
		def = heartbeatURL(getenv("HTTP_ADDR"))
	}
	url := fs.String("url", def, "heartbeat URL (env HEALTHCHECK_URL; default from HTTP_ADDR)")
	timeout := fs.Duration("timeout", 3*time.Second, "request timeout (the ELB's is 3s)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("heartbeat URL %q: %w", *url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", *url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", *url, resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintln(stdout, strings.TrimSpace(string(body)))
	return nil
}

// heartbeatURL turns a listen address into the URL of the local heartbeat.
func heartbeatURL(addr string) string {
	if addr == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://127.0.0.1:8080/heartbeat"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/heartbeat"
}

func runIndexes(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := newFlagSet("indexes", "Create the MongoDB indexes every export kind and the ledger's outbox need. Idempotent; exits non-zero on failure.\nEnvironment: MONGO_URI (required), MONGO_DATABASE (default titan).", stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	db, closeDB, err := openDatabase(ctx, getenv)
	if err != nil {
		return err
	}
	defer closeDB()
	created, err := jobs.CreateIndexes(ctx, db, jobs.DefaultRegistry())
	more, lerr := ledger.CreateIndexes(ctx, db)
	created, err = append(created, more...), errors.Join(err, lerr)
	for _, name := range created {
		fmt.Fprintf(stdout, "index %s: ok\n", name)
	}
	return err
}

func connectMongo(ctx context.Context, uri string) (*mongo.Client, error) {
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetAppName("export-service"))
	if err != nil {
		return nil, fmt.Errorf("mongo: connect: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := client.Database("admin").RunCommand(pctx, bson.D{{Key: "ping", Value: 1}}).Err(); err != nil {
		_ = disconnectBounded(ctx, client)
		return nil, fmt.Errorf("mongo: ping: %w", err)
	}
	return client, nil
}

// shutdownStepTimeout bounds the steps of the shutdown after the drain: the HTTP server's
// shutdown and the background loops' end.
const shutdownStepTimeout = 5 * time.Second

// mongoDisconnectTimeout bounds the MongoDB disconnect. Without a deadline, Disconnect waits
// for a server to end the client's sessions on (endSessions), which with MongoDB unreachable
// is the driver's whole 30 s server selection timeout. A reachable server answers in
// milliseconds; sessions left behind are harmless (the server expires them), and the
// connections are closed anyway once the deadline passed.
const mongoDisconnectTimeout = 2 * time.Second

// disconnectBounded disconnects from MongoDB within mongoDisconnectTimeout.
func disconnectBounded(ctx context.Context, client *mongo.Client) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mongoDisconnectTimeout)
	defer cancel()
	if err := client.Disconnect(dctx); err != nil {
		return fmt.Errorf("mongo: disconnect: %w", err)
	}
	return nil
}
