package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/node/containerd"
)

const nodeUsage = `usage:
  portcullis node containerd --mirror https://MIRROR[:PORT] [--ca-file F] [--certs-dir DIR]
                             [--config FILE] [--watch [--interval D]] [--fail-open]
      write DIR/<registry>/hosts.toml for every configured upstream and _default,
      so that containerd pulls through the mirror and, unless --fail-open,
      never reaches the origin registry when the mirror is down`

// nodeCommand configures the node's container runtime to pull through
// Portcullis.
func nodeCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "containerd" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprintln(stdout, nodeUsage)
			return errHelp
		}
		fmt.Fprintln(stderr, nodeUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("node containerd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, nodeUsage); fs.PrintDefaults() }
	mirror := fs.String("mirror", "", "the mirror's address as the node reaches it, `https://HOST[:PORT]` (required)")
	caFile := fs.String("ca-file", "", "PEM `file` with the CA of the mirror's certificate (copied next to each hosts.toml); default: the node's system roots")
	certsDir := fs.String("certs-dir", "/etc/containerd/certs.d", "containerd's registry configuration `directory` (its config_path)")
	configPath := fs.String("config", os.Getenv("PORTCULLIS_CONFIG"), "Portcullis configuration `file` whose upstreams to configure (also $PORTCULLIS_CONFIG); default: the built-in upstreams")
	watch := fs.Bool("watch", false, "keep running: re-read the configuration and CA, re-write changed files and repair drift every --interval")
	interval := fs.Duration("interval", 30*time.Second, "with --watch, how often to check (1s to 1h)")
	failOpen := fs.Bool("fail-open", false, "let containerd pull from the origin registry when the mirror cannot answer (default: pulls fail)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("node containerd: unexpected arguments %q", fs.Args())
	}
	if !*watch && flagSet(fs, "interval") {
		return fmt.Errorf("node containerd: --interval needs --watch (without it the files are written once)")
	}
	if *mirror == "" {
		fmt.Fprintln(stderr, "node containerd: --mirror is required")
		return errUsage
	}
	mirrorURL, err := containerd.ParseMirror(*mirror)
	if err != nil {
		return fmt.Errorf("node containerd: %w", err)
	}
	load := func() (containerd.Desired, error) {
		return loadNodeDesired(*configPath, *caFile, mirrorURL, *failOpen)
	}
	log := newLogger(config.Default().Log, stderr)
	if strings.HasPrefix(mirrorURL, "http://") {
		log.Warn("node agent: the mirror is plain http; pulls and credentials cross the network unencrypted", "mirror", mirrorURL)
	}
	if *failOpen {
		log.Warn("node agent: --fail-open: when the mirror is down, pulls go to the origin registries unchecked")
	}
	if *watch {
		log.Info("node agent: watching", "certs_dir", *certsDir, "mirror", mirrorURL, "interval", interval.String(), "fail_open", *failOpen)
		return containerd.Watch(ctx, log, *certsDir, *interval, load)
	}
	d, err := load()
	if err != nil {
		return err
	}
	res, err := containerd.Sync(*certsDir, d)
	for _, p := range res.Written {
		fmt.Fprintln(stderr, "wrote", p)
	}
	for _, p := range res.Removed {
		fmt.Fprintln(stderr, "removed", p)
	}
	if err != nil {
		return fmt.Errorf("node containerd: %w", err)
	}
	if len(res.Foreign) > 0 {
		return fmt.Errorf("node containerd: left alone (not written by Portcullis; pulls they configure do not go through the mirror): %s", strings.Join(res.Foreign, ", "))
	}
	return nil
}

// loadNodeDesired reads the upstreams from the Portcullis configuration
// (the built-in ones without a file) and the CA file.
func loadNodeDesired(configPath, caFile, mirror string, failOpen bool) (containerd.Desired, error) {
	cfg := config.Default()
	if configPath != "" {
		// An empty file means "all defaults" to the server, but to the
		// agent it is most likely one caught mid-rewrite: adopting it
		// would swap every configured registry's file for the built-in
		// ones until the next pass.
		if st, err := os.Stat(configPath); err == nil && st.Size() == 0 {
			return containerd.Desired{}, fmt.Errorf("configuration %s is empty", configPath)
		}
		var err error
		if cfg, err = config.Load(configPath); err != nil {
			return containerd.Desired{}, err
		}
	}
	// The agent reads the upstreams only: the files the server reads (API
	// tokens, alert secrets) are not mounted on the nodes.
	cfg.API.TokensFile, cfg.Alerts = "", config.Alerts{}
	if err := cfg.Finish(); err != nil {
		return containerd.Desired{}, err
	}
	d := containerd.Desired{Mirror: mirror, FailOpen: failOpen}
	for _, u := range cfg.Upstreams {
		origin, err := containerd.ParseOrigin(u.URL)
		if err != nil {
			return containerd.Desired{}, fmt.Errorf("upstream %s: %w", u.Name, err)
		}
		d.Registries = append(d.Registries, containerd.Registry{Name: u.Name, Origin: origin})
	}
	if caFile != "" {
		ca, err := readBounded(caFile, containerd.MaxCABytes)
		if err != nil {
			return containerd.Desired{}, fmt.Errorf("ca file: %w", err)
		}
		if err := containerd.CheckCA(ca); err != nil {
			return containerd.Desired{}, fmt.Errorf("ca file %s: %w", caFile, err)
		}
		d.CA = ca
	}
	return d, nil
}

// readBounded reads at most limit bytes of path and fails when it is larger.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// flagSet reports whether name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
