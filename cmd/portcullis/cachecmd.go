package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/proxy/cache"
)

const cacheUsage = `usage:
  portcullis cache verify [--data DIR] [--config FILE]   re-hash every cached blob and manifest, delete mismatches`

// errCacheDamaged makes 'cache verify' exit non-zero once it has printed
// its summary.
var errCacheDamaged = errors.New("damaged cache content was deleted")

// cacheCommand checks the content cache.
func cacheCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, cacheUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("cache verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", os.Getenv("PORTCULLIS_CONFIG"), "YAML configuration `file` naming the storage (also $PORTCULLIS_CONFIG)")
	dataDir := fs.String("data", "", "data `directory` (default: the configuration's, else ./portcullis-data)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cache verify: unexpected arguments %q", fs.Args())
	}
	cfg := config.Default()
	if *configPath != "" {
		var err error
		if cfg, err = config.Load(*configPath); err != nil {
			return err
		}
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if err := cfg.Finish(); err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	rep, err := cache.Scrub(ctx, cache.Config{
		Driver:     cfg.Storage.Driver,
		Parameters: cfg.Storage.Parameters,
		Logger:     log,
	}, func(d digest.Digest, size int64, ok bool) {
		if !ok {
			fmt.Fprintf(stdout, "BAD %s (%d bytes): deleted\n", d, size)
		}
	})
	fmt.Fprintf(stdout, "checked %d, bad %d, %d bytes hashed\n", rep.Checked, rep.Bad, rep.Bytes)
	if err != nil {
		return fmt.Errorf("cache verify: %w", err)
	}
	if rep.Bad > 0 {
		return fmt.Errorf("cache verify: %d of %d items did not match their digest: %w (the next pull fetches them again)", rep.Bad, rep.Checked, errCacheDamaged)
	}
	return nil
}
