package conformance

// Building, running and reading the OCI distribution-spec conformance suite.
//
// The suite is a standalone main package configured by OCI_* variables. It is
// built from a copy of its module (the module cache is read-only) with one
// guard patched into run.go, and the binary is cached in the user's cache
// directory (beside Go's build cache, not in the temporary directory, which
// tests leave as they found it), keyed by the suite version, the patch and
// the Go toolchain, so re-runs do not rebuild it. A `tool` directive in our go.mod was rejected: it cannot carry
// the patch (that needs a replace pointing at a patched copy kept in the
// repository) and it would add the suite's dependencies to our module.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	suiteModule  = "github.com/opencontainers/distribution-spec/conformance"
	suiteVersion = "v0.0.0-20260831232431-97274622c111"

	// keepResultsEnv names a directory to keep each run's results in
	// (one subdirectory per test); by default they go with t.TempDir.
	keepResultsEnv = "PORTCULLIS_CONFORMANCE_RESULTS"

	suiteBuildTimeout = 5 * time.Minute
	suiteRunTimeout   = 3 * time.Minute
)

// In read-only mode (OCI_API_PUSH=false) the blob API tests are skipped
// before their test data exists, so r.State.DataStatus has keys
// ("blobs-sha256", "blobs-sha512") without an r.State.Data entry, and
// ReportResultsYAML dereferences nil before junit.xml is written. The guard
// keeps the data key as its name instead.
const (
	yamlLoopOrig = "\tfor k, v := range r.State.DataStatus {\n" +
		"\t\tresults.Data[r.State.Data[k].name] = v\n" +
		"\t}\n"
	yamlLoopGuarded = "\tfor k, v := range r.State.DataStatus {\n" +
		"\t\tif r.State.Data[k] == nil { // patched by portcullis: no test data for skipped blob tests\n" +
		"\t\t\tresults.Data[k] = v\n" +
		"\t\t\tcontinue\n" +
		"\t\t}\n" +
		"\t\tresults.Data[r.State.Data[k].name] = v\n" +
		"\t}\n"
)

var suiteBuild struct {
	once sync.Once
	path string
	err  error
}

// suiteBinary returns the path of the built conformance program, building
// it on first use in this process unless a cached build exists.
func suiteBinary(t testing.TB) string {
	t.Helper()
	suiteBuild.once.Do(func() {
		start := time.Now()
		suiteBuild.path, suiteBuild.err = buildSuite()
		if suiteBuild.err == nil {
			t.Logf("conformance suite %s@%s ready at %s (%s)", suiteModule, suiteVersion, suiteBuild.path, time.Since(start).Round(time.Millisecond))
		}
	})
	if suiteBuild.err != nil {
		t.Fatalf("building the OCI conformance suite: %v", suiteBuild.err)
	}
	return suiteBuild.path
}

func suiteCachePath() string {
	h := sha256.New()
	for _, s := range []string{suiteModule, suiteVersion, yamlLoopOrig, yamlLoopGuarded, runtime.Version(), runtime.GOOS, runtime.GOARCH} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	key := suiteVersion + "-" + hex.EncodeToString(h.Sum(nil))[:16]
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir() // no home: rebuilt by each run that lacks it
	}
	return filepath.Join(dir, "portcullis", "oci-conformance", key, "conformance")
}

func buildSuite() (string, error) {
	bin := suiteCachePath()
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return bin, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is needed to build the suite: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), suiteBuildTimeout)
	defer cancel()

	work, err := os.MkdirTemp("", "portcullis-oci-conformance-src-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)

	// Locate (downloading through GOPROXY if needed) the module source.
	// Run outside our module so nothing touches go.mod or go.sum.
	dl := exec.CommandContext(ctx, goBin, "mod", "download", "-json", suiteModule+"@"+suiteVersion)
	dl.Dir = work
	dl.Env = goEnv("GOFLAGS=")
	out, err := dl.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %v %s\n%s", suiteModule, suiteVersion, err, info.Error, stderrOf(err))
	}

	src := filepath.Join(work, "src")
	if err := copyTree(info.Dir, src); err != nil {
		return "", fmt.Errorf("copying suite source: %w", err)
	}
	runGo := filepath.Join(src, "run.go")
	code, err := os.ReadFile(runGo)
	if err != nil {
		return "", err
	}
	if n := strings.Count(string(code), yamlLoopOrig); n != 1 {
		return "", fmt.Errorf("suite source changed: expected exactly one ReportResultsYAML loop to guard in %s, found %d; re-check the nil dereference and update yamlLoopOrig", runGo, n)
	}
	code = []byte(strings.Replace(string(code), yamlLoopOrig, yamlLoopGuarded, 1))
	if err := os.WriteFile(runGo, code, 0o644); err != nil {
		return "", err
	}

	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	tmpBin := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	build := exec.CommandContext(ctx, goBin, "build", "-trimpath",
		"-ldflags=-X main.Version="+suiteVersion+"+portcullis-guard", "-o", tmpBin, ".")
	build.Dir = src
	build.Env = goEnv("GOFLAGS=-mod=mod -buildvcs=false", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		_ = os.Remove(tmpBin)
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	if err := os.Rename(tmpBin, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// goEnv is the environment for go commands: ours, outside any workspace,
// never switching toolchains, plus overrides. GOPROXY comes from the caller.
func goEnv(extra ...string) []string {
	env := append(os.Environ(), "GOWORK=off", "GO111MODULE=on", "GOTOOLCHAIN=local")
	return append(env, extra...)
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// suiteConfig is the suite's OCI_* environment (without the prefix).
type suiteConfig map[string]string

// runSuite runs the conformance program once and returns its junit results.
func runSuite(t testing.TB, cfg suiteConfig) *suiteResult {
	t.Helper()
	bin := suiteBinary(t)
	dir := t.TempDir()
	resultsDir := filepath.Join(dir, "results")
	if keep := os.Getenv(keepResultsEnv); keep != "" {
		resultsDir = filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.RemoveAll(resultsDir); err != nil {
			t.Fatal(err)
		}
		t.Logf("suite results (junit.xml, report.html, results.yaml) kept in %s", resultsDir)
	}

	// Our OCI_* variables only; the suite reads no configuration file
	// because its working directory (dir) has no oci-conformance.yaml.
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OCI_") {
			env = append(env, kv)
		}
	}
	env = append(env, "OCI_RESULTS_DIR="+resultsDir)
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, "OCI_"+k+"="+cfg[k])
	}

	ctx, cancel := context.WithTimeout(context.Background(), suiteRunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = dir
	cmd.Env = env
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr strings.Builder
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("conformance suite did not finish within %s\nstderr:\n%s", suiteRunTimeout, tail(stderr.String(), 4000))
	}
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		// Exit status 1 means "a test failed" and is judged from junit.xml.
		t.Fatalf("conformance suite crashed: %v\nstderr:\n%s", err, tail(stderr.String(), 4000))
	}
	raw, rerr := os.ReadFile(filepath.Join(resultsDir, "junit.xml"))
	if rerr != nil {
		t.Fatalf("conformance suite wrote no junit.xml (%v); exit: %v\nstderr:\n%s", rerr, err, tail(stderr.String(), 4000))
	}
	var ju junitTestSuites
	if err := xml.Unmarshal(raw, &ju); err != nil {
		t.Fatalf("parsing junit.xml: %v", err)
	}
	if len(ju.Suites) != 1 {
		t.Fatalf("junit.xml has %d test suites, want 1", len(ju.Suites))
	}
	return &suiteResult{junitTestSuite: ju.Suites[0], Elapsed: elapsed, Stdout: stdout.String(), ExitErr: err}
}

// junit.xml as the suite writes it (conformance/junit.go). Leaf tests carry
// their status in an attribute, their errors in system-out and the HTTP
// transcript in system-err.
type junitTestSuites struct {
	XMLName xml.Name         `xml:"testsuites"`
	Suites  []junitTestSuite `xml:"testsuite"`
}

type junitTestSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Disabled int         `xml:"disabled,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string `xml:"name,attr"`
	Status    string `xml:"status,attr"` // passed, skipped, failure, error
	SystemOut string `xml:"system-out"`  // joined errors
	SystemErr string `xml:"system-err"`  // request/response transcript
}

func (c junitCase) failed() bool { return c.Status == "failure" || c.Status == "error" }

// unsupported reports a test the suite downgraded to "skipped" because the
// registry answered that it lacks the feature (it still records the error),
// as opposed to a test disabled by configuration (no error recorded).
func (c junitCase) unsupported() bool {
	return c.Status == "skipped" && strings.TrimSpace(c.SystemOut) != ""
}

func (c junitCase) short() string {
	return strings.TrimPrefix(c.Name, "OCI Conformance Test/")
}

type suiteResult struct {
	junitTestSuite
	Elapsed time.Duration
	Stdout  string
	ExitErr error
}

func (r *suiteResult) count(status string) int {
	n := 0
	for _, c := range r.Cases {
		if c.Status == status {
			n++
		}
	}
	return n
}

// passedByName counts passing leaf tests per name; names repeat (one
// manifest-by-digest test per manifest, ...).
func (r *suiteResult) passedByName() map[string]int {
	m := map[string]int{}
	for _, c := range r.Cases {
		if c.Status == "passed" {
			m[c.short()]++
		}
	}
	return m
}

func (r *suiteResult) summary() string {
	return fmt.Sprintf("%d tests (suite counts: tests=%d failures=%d errors=%d skipped=%d disabled=%d; leaves: %d passed, %d failed, %d errors, %d skipped of which %d unsupported) in %s",
		len(r.Cases), r.Tests, r.Failures, r.Errors, r.Skipped, r.Disabled,
		r.count("passed"), r.count("failure"), r.count("error"), r.count("skipped"), len(r.filter(junitCase.unsupported)),
		r.Elapsed.Round(time.Millisecond))
}

func (r *suiteResult) filter(keep func(junitCase) bool) []junitCase {
	var out []junitCase
	for _, c := range r.Cases {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// describe lists tests with their error messages and, for the first few, the
// tail of the HTTP transcript of the failing exchange.
func describe(cases []junitCase, transcripts int) string {
	var b strings.Builder
	for i, c := range cases {
		fmt.Fprintf(&b, "\n  %s [%s]: %s", c.short(), c.Status, indent(strings.TrimSpace(c.SystemOut), "      "))
		if i < transcripts && c.SystemErr != "" {
			fmt.Fprintf(&b, "\n    last exchange:\n      %s", indent(tail(lastExchange(c.SystemErr), 1500), "      "))
		}
	}
	return b.String()
}

// brief lists tests compactly: each name once, with how often it appears
// and the first line of its first error.
func brief(cases []junitCase) string {
	type entry struct {
		n   int
		msg string
	}
	var names []string
	byName := map[string]*entry{}
	for _, c := range cases {
		e := byName[c.short()]
		if e == nil {
			msg, _, _ := strings.Cut(strings.TrimSpace(c.SystemOut), "\n")
			if len(msg) > 240 {
				msg = msg[:240] + "..."
			}
			e = &entry{msg: msg}
			byName[c.short()] = e
			names = append(names, c.short())
		}
		e.n++
	}
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "\n  %s (x%d): %s", name, byName[name].n, byName[name].msg)
	}
	return b.String()
}

func lastExchange(transcript string) string {
	const sep = "~~~ REQUEST ~~~"
	if i := strings.LastIndex(transcript, sep); i >= 0 {
		return transcript[i:]
	}
	return transcript
}

func indent(s, prefix string) string {
	return strings.ReplaceAll(s, "\n", "\n"+prefix)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// splitRouter sends reads (GET and HEAD, except on upload sessions) to
// reads and everything else to writes, so the suite can push to an upstream
// while every pull it checks goes to reads (Portcullis, or the upstream
// itself for a baseline). Absolute Location headers naming either server
// are made relative so follow-up requests come back through the router.
//
// It also papers over one gap of the ggcr registry behind testregistry,
// on write responses only: a completed blob upload or manifest push (201)
// carries no Location header, which the spec requires and the suite follows
// to read the content back. The router adds /v2/<name>/blobs/<digest> or
// /v2/<name>/manifests/<digest> (from Docker-Content-Digest), so those reads
// happen (through reads) instead of the push tests failing before them.
func splitRouter(t testing.TB, reads, writes string) *httptest.Server {
	t.Helper()
	ru, err := url.Parse(reads)
	if err != nil {
		t.Fatal(err)
	}
	wu, err := url.Parse(writes)
	if err != nil {
		t.Fatal(err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	transport.ResponseHeaderTimeout = time.Minute
	transport.DisableCompression = true
	rp := func(target *url.URL, fixLocation bool) *httputil.ReverseProxy {
		return &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
			},
			Transport: transport,
			ModifyResponse: func(resp *http.Response) error {
				if loc := resp.Header.Get("Location"); loc != "" {
					if lu, err := url.Parse(loc); err == nil && lu.IsAbs() && (lu.Host == ru.Host || lu.Host == wu.Host) {
						lu.Scheme, lu.Host, lu.User = "", "", nil
						resp.Header.Set("Location", lu.String())
					}
				}
				dig := resp.Header.Get("Docker-Content-Digest")
				if fixLocation && resp.StatusCode == http.StatusCreated && resp.Header.Get("Location") == "" && dig != "" {
					p := resp.Request.URL.Path
					if name, _, ok := strings.Cut(p, "/blobs/uploads"); ok {
						resp.Header.Set("Location", name+"/blobs/"+dig)
					} else if i := strings.LastIndex(p, "/manifests/"); i > 0 {
						resp.Header.Set("Location", p[:i]+"/manifests/"+dig)
					}
				}
				return nil
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				http.Error(w, "conformance test router: "+err.Error(), http.StatusBadGateway)
			},
		}
	}
	toReads, toWrites := rp(ru, false), rp(wu, true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		read := r.Method == http.MethodGet || r.Method == http.MethodHead
		if read && !strings.Contains(r.URL.Path, "/blobs/uploads") {
			toReads.ServeHTTP(w, r)
			return
		}
		toWrites.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}
