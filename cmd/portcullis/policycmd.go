package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner"
)

const policyUsage = `usage:
  portcullis policy check --config POLICY.yaml
  portcullis policy test  --config POLICY.yaml [--data DIR] [--platform P] [--format text|json] [--exit-code N] REF`

// policyCommand validates a policy file, or judges one image under it.
func policyCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "check" && args[0] != "test") {
		fmt.Fprintln(stderr, policyUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("policy "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "policy `file`")
	dataDir := fs.String("data", "./portcullis-data", "data `directory` holding the vulnerability database (test)")
	platform := fs.String("platform", "linux/amd64", "`os/arch` to judge when REF is an index (test)")
	format := fs.String("format", "text", "output `format`: text or json (test)")
	exitCode := fs.Int("exit-code", 0, "exit with this `code` when the image would be blocked (test)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if args[0] == "check" && *path == "" && fs.NArg() == 1 {
		*path = fs.Arg(0)
	}
	if *path == "" {
		fmt.Fprintln(stderr, policyUsage)
		return errUsage
	}
	pol, err := loadPolicy(*path)
	if err != nil {
		return err
	}
	if args[0] == "check" {
		if err := checkPolicyFiles(pol); err != nil {
			return fmt.Errorf("policy %s: %w", *path, err)
		}
		fmt.Fprintf(stdout, "%s: ok, %d rules, version %s\n", *path, len(pol.Rules), pol.Version())
		explainMalwareRules(stdout, pol)
		explainCurationRules(stdout, pol)
		return nil
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, policyUsage)
		return errUsage
	}
	dec, err := policyTest(ctx, pol, *dataDir, *platform, fs.Arg(0), stderr)
	if err != nil {
		return err
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(dec)
	} else {
		err = printDecision(stdout, fs.Arg(0), dec)
	}
	if err != nil {
		return err
	}
	if *exitCode != 0 && dec.Effective == policy.Block {
		return errFindings{code: *exitCode, n: len(dec.Reasons)}
	}
	return nil
}

// policyTest scans and judges REF straight from its registry, no server.
func policyTest(ctx context.Context, pol *policy.Policy, dataDir, platform, ref string, stderr io.Writer) (policy.Decision, error) {
	useScalibrLogger(newLogger(config.Log{Level: "warn", Format: "text"}, stderr))
	r, err := name.ParseReference(ref)
	if err != nil {
		return policy.Decision{}, fmt.Errorf("image reference %q: %w", ref, err)
	}
	upstream := r.Context().RegistryStr()
	if upstream == name.DefaultRegistry {
		upstream = "docker.io" // how clients and policies name Docker Hub
	}
	// As the mirror does: a source or tag the policy refuses is refused
	// before anything is fetched.
	if dec, refused := pol.Curate(upstream, r.Context().RepositoryStr(), r.Identifier()); refused && dec.Effective == policy.Block {
		return dec, nil
	}
	img, err := remoteImage(ctx, ref, platform)
	if err != nil {
		return policy.Decision{}, err
	}
	d, err := img.Digest()
	if err != nil {
		return policy.Decision{}, err
	}
	var matcher pipeline.Matcher
	if _, err := os.Stat(filepath.Join(dataDir, "vulndb")); err == nil {
		db, err := openDBWaiting(ctx, filepath.Join(dataDir, "vulndb"))
		if err != nil {
			return policy.Decision{}, err
		}
		defer db.Close()
		matcher = db
	} else if !errors.Is(err, os.ErrNotExist) {
		return policy.Decision{}, err
	}
	pl := pipeline.New(pipeline.Options{Images: remoteRegistry{}, Registry: remoteRegistry{}, Scanner: scanner.New(),
		ScannerVersion: scanner.Version, Matcher: matcher, Policy: pol})
	progress(stderr, "judging %s", ref)
	dec, _, err := pl.EvaluateOnce(ctx, upstream, r.Context().RepositoryStr(), r.Identifier(), digest.Digest(d.String()))
	return dec, err
}

// maxSuppressedShown bounds the suppressed findings 'policy test' lists.
const maxSuppressedShown = 20

func printDecision(w io.Writer, ref string, d policy.Decision) error {
	fmt.Fprintf(w, "%s: %s (rule %s, mode %s, verdict %s)\n", ref, d.Effective, d.Rule, d.Mode, d.Verdict)
	for _, r := range d.Reasons {
		fmt.Fprintf(w, "  %s %s: %s\n", r.Verdict, r.Code, r.Message)
	}
	if len(d.Reasons) == 0 {
		fmt.Fprintln(w, "  no findings")
	}
	for i, sup := range d.Suppressed {
		if i == maxSuppressedShown {
			fmt.Fprintf(w, "  … and %d more suppressed by VEX\n", len(d.Suppressed)-i)
			break
		}
		fmt.Fprintf(w, "  suppressed by VEX: %s in %s %s (%s, %s %s)\n", sup.ID, sup.Package, sup.InstalledVersion, sup.Document, sup.Status, sup.Justification)
	}
	for _, n := range d.VEX {
		fmt.Fprintf(w, "  VEX: %s\n", n)
	}
	if len(d.Reasons) == 1 && d.Effective == policy.Block && (d.Has(policy.CodeSourceBlocked) || d.Has(policy.CodeTagBlocked) || d.Has(policy.CodeDigestRequired)) {
		fmt.Fprintln(w, "  (refused by curation before anything is fetched: the image was not read or scanned)")
	}
	if d.Has(policy.CodeMalware) && d.Mode != policy.ModeEnforce {
		// Otherwise "block" under a warn-mode rule reads like a bug.
		fmt.Fprintf(w, "  (the rule's mode %s does not soften malware: its malware setting decides)\n", d.Mode)
	}
	return nil
}

// explainMalwareRules names the rules that let malware through: every
// other rule blocks it, and that is the default worth knowing about.
func explainMalwareRules(w io.Writer, pol *policy.Policy) {
	for _, r := range pol.Rules {
		switch r.Malware {
		case policy.Warn:
			fmt.Fprintf(w, "  rule %s: malware is served with a warning (malware: warn)\n", r.Name)
		case policy.Allow:
			fmt.Fprintf(w, "  rule %s: malware is allowed (malware: allow)\n", r.Name)
		}
	}
}

// explainCurationRules names what each rule refuses before anything is
// fetched, with the reason clients are shown, as `policy test` and the
// mirror word it.
func explainCurationRules(w io.Writer, pol *policy.Policy) {
	for _, r := range pol.Rules {
		reason := ""
		if r.Reason != "" {
			reason = ": " + r.Reason
		}
		under := ""
		if r.Mode != policy.ModeEnforce {
			under = fmt.Sprintf(" (mode %s: served, not refused)", r.Mode)
		}
		if r.Source == policy.SourceBlock {
			fmt.Fprintf(w, "  rule %s: refuses every repository it matches, not an approved source%s%s\n", r.Name, reason, under)
		}
		if r.Tags == nil {
			continue
		}
		if len(r.Tags.Block) > 0 {
			fmt.Fprintf(w, "  rule %s: refuses pulls by the tags %s%s%s\n", r.Name, strings.Join(r.Tags.Block, ", "), reason, under)
		}
		if r.Tags.RequireDigest {
			fmt.Fprintf(w, "  rule %s: refuses every pull by tag, only digests (require_digest)%s%s\n", r.Name, reason, under)
		}
	}
}
