package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/report"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/badfiles"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/vex"
)

// errFindings makes the process exit with --exit-code.
type errFindings struct{ code, n int }

func (e errFindings) Error() string { return fmt.Sprintf("%d vulnerabilities found", e.n) }

func scanCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data", "./portcullis-data", "data `directory` holding the vulnerability database")
	archive := fs.String("archive", "", "scan a docker-archive or OCI layout `tarball` instead of a registry image")
	format := fs.String("format", "table", "output `format`: table, json, cyclonedx, spdx, sarif")
	severity := fs.String("severity", "", "report only these `levels` (comma-separated: CRITICAL,HIGH,MEDIUM,LOW,UNKNOWN)")
	exitCode := fs.Int("exit-code", 0, "exit with this `code` when vulnerabilities remain after filtering")
	platform := fs.String("platform", "linux/amd64", "`os/arch[/variant]` to scan when REF is a multi-platform index")
	var vexFiles vexFlag
	fs.Var(&vexFiles, "vex", "OpenVEX `file` whose statements suppress findings (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: portcullis scan [flags] REF | --archive FILE")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// The report goes to stdout; the extractors' chatter only at debug.
	useScalibrLogger(newLogger(config.Log{Level: "warn", Format: "text"}, stderr))
	levels, err := report.ParseSeverities(*severity)
	if err != nil {
		return err
	}
	switch *format {
	case "table", "json", "cyclonedx", "spdx", "sarif":
	default:
		return fmt.Errorf("unknown --format %q: use table, json, cyclonedx, spdx or sarif", *format)
	}
	// Read before the scan: a bad document fails at once.
	vexDocs, err := vex.LoadFiles(".", vexFiles, "--vex ")
	if err != nil {
		return err
	}
	var img v1.Image
	var subject, named string // named: the digest the reference names (an index's)
	switch {
	case *archive != "" && fs.NArg() == 0:
		subject = *archive
		if img, err = scanner.ImageFromArchive(*archive); err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
	case *archive == "" && fs.NArg() == 1:
		subject = fs.Arg(0)
		r, err := name.ParseReference(subject)
		if err != nil {
			return fmt.Errorf("image reference %q: %w", subject, err)
		}
		p, err := v1.ParsePlatform(*platform)
		if err != nil {
			return fmt.Errorf("--platform %q: %w", *platform, err)
		}
		if img, named, err = remoteImageOf(ctx, r, *p); err != nil {
			return err
		}
	default:
		fs.Usage()
		return errUsage
	}

	// The SBOM alone needs no database.
	var db *vulndb.DB
	if *format != "spdx" {
		if db, err = openExistingDB(ctx, *dataDir); err != nil {
			return err
		}
		defer db.Close()
	}
	var scanOpts []scanner.Option
	if db != nil {
		// Known-bad files: the database's ClamAV hash signatures, checked
		// while the layers are walked (clamd is the server's, scan.clamd).
		sigs, err := db.SignatureMatcher(config.DefaultHashMaxFile)
		if err != nil {
			return fmt.Errorf("read hash signatures: %w", err)
		}
		checker := &badfiles.Checker{Signatures: sigs}
		scanOpts = append(scanOpts, scanner.WithFileInspector(checker.ForWalk(config.DefaultHashMaxFile)))
	}
	progress(stderr, "scanning %s", subject)
	inv, err := scanner.New(scanOpts...).Scan(ctx, img)
	if err != nil {
		return fmt.Errorf("scan %s: %w", subject, err)
	}
	if d, err := img.Digest(); err == nil {
		inv.ImageDigest = d.String()
	}
	res := report.Result{Image: subject, Inventory: inv}
	if db != nil {
		progress(stderr, "matching %d packages", len(inv.Packages))
		findings, version, err := db.MatchVersioned(ctx, inv.Queries())
		if err != nil {
			return fmt.Errorf("match vulnerabilities: %w", err)
		}
		findings = append(findings, inv.FileFindings...) // secrets and known-bad files, found by the scan itself
		if len(vexFiles) > 0 {
			r := vex.Apply(vexDocs.Sources, []string{inv.ImageDigest, named}, findings)
			findings, res.Suppressed, res.VEX = r.Findings, r.Suppressed, r.Notes
		}
		res.Findings, res.DBVersion = report.Filter(findings, levels), version
	}
	switch *format {
	case "table":
		err = report.Table(stdout, res)
	case "json":
		err = report.JSON(stdout, res)
	case "sarif":
		err = report.SARIF(stdout, res, version())
	case "cyclonedx":
		err = scanner.WriteCycloneDX(stdout, inv, res.Findings)
	case "spdx":
		err = scanner.WriteSPDX(stdout, inv)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", *format, err)
	}
	if *exitCode != 0 && len(res.Findings) > 0 {
		return errFindings{code: *exitCode, n: len(res.Findings)}
	}
	return nil
}

// vexFlag collects repeated --vex files.
type vexFlag []string

func (v *vexFlag) String() string { return strings.Join(*v, ",") }

func (v *vexFlag) Set(s string) error {
	if len(*v) >= vex.MaxFiles {
		return fmt.Errorf("more than %d --vex files", vex.MaxFiles)
	}
	*v = append(*v, s)
	return nil
}

// remoteImage pulls from any registry, or through a Portcullis: loopback
// registries are reached over plain http, as ggcr does for localhost.
func remoteImage(ctx context.Context, ref, platform string) (v1.Image, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		return nil, fmt.Errorf("--platform %q: %w", platform, err)
	}
	img, _, err := remoteImageOf(ctx, r, *p)
	return img, err
}

// remoteImageOf fetches r for platform and also returns the digest r
// names: an index's when r is one (VEX documents may name it).
func remoteImageOf(ctx context.Context, r name.Reference, platform v1.Platform) (v1.Image, string, error) {
	desc, err := remote.Get(r, remote.WithContext(ctx), remote.WithPlatform(platform))
	if err != nil {
		return nil, "", fmt.Errorf("fetch %s: %w", r, err)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, "", fmt.Errorf("fetch %s: %w", r, err)
	}
	return img, desc.Digest.String(), nil
}

// openExistingDB opens the database in dataDir, refusing to scan against an
// empty one: a clean report from no data would be a lie.
func openExistingDB(ctx context.Context, dataDir string) (*vulndb.DB, error) {
	dir := filepath.Join(dataDir, "vulndb")
	// Checked first: opening would create an empty database (and its
	// directories) where there was none.
	if present, err := vulndb.Present(dir); err != nil {
		return nil, err
	} else if !present {
		return nil, fmt.Errorf("no vulnerability database in %s: run 'portcullis db update --data %s' or 'portcullis db import --data %s PATH…'", dataDir, dataDir, dataDir)
	}
	db, err := openDBWaiting(ctx, dir)
	if err != nil {
		return nil, err
	}
	st, err := db.Status()
	if err != nil {
		db.Close()
		return nil, err
	}
	if st.Records == 0 && st.Signatures == 0 {
		db.Close()
		return nil, fmt.Errorf("the vulnerability database in %s is empty: run 'portcullis db update' or 'portcullis db import'", dataDir)
	}
	return db, nil
}

// progress prints a status line when stderr is a terminal.
func progress(w io.Writer, format string, args ...any) {
	if isTerminal(w) {
		fmt.Fprintf(w, "\r\033[K"+format, args...)
		if !strings.HasSuffix(format, "\n") {
			fmt.Fprint(w, "\n")
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// parseFlags parses and turns -h into a clean exit.
