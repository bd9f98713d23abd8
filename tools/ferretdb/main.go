// Command ferretdb-local runs an embedded FerretDB (MongoDB wire protocol) with
// the SQLite handler for the local development/test stack.
//
// FerretDB's own cmd/ferretdb refuses to start when built from the module
// proxy (it wants build/version/version.txt), so the stack embeds the
// github.com/FerretDB/FerretDB/ferretdb package instead.
//
//	ferretdb-local -listen 127.0.0.1:27017 -dir .stack/data/ferretdb
//
// On start it prints the MongoDB URI on stdout (one line). It stops cleanly on
// SIGINT or SIGTERM. Logs at -log-level and above go to stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb-local:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on (host:port)")
	dir := flag.String("dir", ".stack/data/ferretdb", "directory holding the SQLite databases (created if missing)")
	logLevel := flag.String("log-level", "warn", "log level: debug, info, warn or error (FerretDB logs every failed command at warn)")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("bad -log-level %q: %w", *logLevel, err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return err
	}
	// The SQLite handler wants a "file:" URI naming an existing directory, ending in "/".
	sqliteURL := "file:" + strings.TrimSuffix(filepath.ToSlash(abs), "/") + "/"

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		return err
	}

	// New has already bound the listener, so the URI carries the real port
	// (also when -listen ends in :0).
	fmt.Println(f.MongoDBURI())

	if err := f.Run(ctx); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}
