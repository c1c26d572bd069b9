package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"time"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/scanner/vulndb"
)

// openDBWaiting opens the vulnerability database in dir; a running server
// holds it only while matching, so this waits (up to two minutes).
func openDBWaiting(ctx context.Context, dir string) (*vulndb.DB, error) {
	wait, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	db, err := vulndb.OpenWait(wait, dir)
	if err != nil {
		return nil, fmt.Errorf("open vulnerability database: %w", err)
	}
	return db, nil
}

func dbCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: portcullis db import|update|status [--data DIR] …")
		return errUsage
	}
	fs := flag.NewFlagSet("db "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data", "./portcullis-data", "data `directory` (the database lives in DIR/vulndb)")
	sourceURL := fs.String("source-url", "", "update: download the OSV exports (<ecosystem>/all.zip) from this `URL` instead of osv.dev")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	var progressOut io.Writer
	if isTerminal(stderr) {
		progressOut = stderr
	}
	open := func() (*vulndb.DB, error) { return openDBWaiting(ctx, filepath.Join(*dataDir, "vulndb")) }
	switch args[0] {
	case "import":
		if fs.NArg() == 0 {
			return fmt.Errorf("db import: name at least one directory, .json file, all.zip archive or ClamAV .hsb/.hdb signature file")
		}
		db, err := open()
		if err != nil {
			return err
		}
		defer db.Close()
		st, err := db.Import(ctx, fs.Args(), progressOut)
		if err != nil {
			return err
		}
		if st.Signatures > 0 {
			fmt.Fprintf(stdout, "imported %d hash signatures\n", st.Signatures)
		}
		fmt.Fprintf(stdout, "imported %d records (%d skipped); database version %s\n", st.Records, st.Skipped, db.Version())
		return nil
	case "update":
		db, err := open()
		if err != nil {
			return err
		}
		defer db.Close()
		st, err := db.Update(ctx, vulnDBSources(config.VulnDB{SourceURL: *sourceURL}), &http.Client{Timeout: dbDownloadTimeout}, progressOut)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "updated: %d records imported (%d skipped); database version %s\n", st.Records, st.Skipped, db.Version())
		return nil
	case "status":
		// A missing or empty database is an answer, not a state to create:
		// it exits non-zero so scripts and probes notice.
		db, err := openExistingDB(ctx, *dataDir)
		if err != nil {
			return err
		}
		defer db.Close()
		st, err := db.Status()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "version:  %s\nbuilt at: %s\nrecords:  %d\n", st.Version, st.BuiltAt.Format(time.RFC3339), st.Records)
		if st.Signatures > 0 {
			fmt.Fprintf(stdout, "hash signatures: %d\n", st.Signatures)
		}
		ecos := make([]string, 0, len(st.Ecosystems))
		for e := range st.Ecosystems {
			ecos = append(ecos, e)
		}
		sort.Strings(ecos)
		for _, e := range ecos {
			fmt.Fprintf(stdout, "  %-20s %d\n", e, st.Ecosystems[e])
		}
		return nil
	}
	return fmt.Errorf("db: unknown subcommand %q: use import, update or status", args[0])
}
