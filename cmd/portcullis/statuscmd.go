package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/pipeline"
)

// errExit ends the process with code, printing err when there is one.
type errExit struct {
	code int
	err  error
}

func (e errExit) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

// Exit codes of portcullis status: CI and admission scripts branch on them.
const (
	exitAllowed = 0
	exitBlocked = 1
	exitError   = 2
)

const (
	// maxStatusBody bounds an API answer read into memory.
	maxStatusBody = 16 << 20
	// maxEventLine bounds one line of the event stream.
	maxEventLine = 1 << 20
)

// apiClientFlags are the flags every API command takes.
type apiClientFlags struct {
	server    *string
	tokenFile *string
}

func addAPIClientFlags(fs *flag.FlagSet) apiClientFlags {
	return apiClientFlags{
		server:    fs.String("server", cmpEnv("PORTCULLIS_SERVER", "http://127.0.0.1:5000"), "Portcullis `URL` (also $PORTCULLIS_SERVER)"),
		tokenFile: fs.String("token-file", "", "`file` holding the API token (api.tokens_file on the server)"),
	}
}

func cmpEnv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// apiClient calls a Portcullis status API.
type apiClient struct {
	base  *url.URL
	token string
	http  *http.Client
}

func (f apiClientFlags) client(timeout time.Duration) (*apiClient, error) {
	u, err := url.Parse(*f.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want http(s)://host[:port]", *f.server)
	}
	c := &apiClient{base: u, http: &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: timeout,
		},
	}}
	if *f.tokenFile != "" {
		raw, err := os.ReadFile(*f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read --token-file: %w", err)
		}
		c.token = strings.TrimSpace(string(raw))
		if c.token == "" || strings.ContainsAny(c.token, "\r\n") {
			return nil, fmt.Errorf("--token-file %s: want one token on one line", *f.tokenFile)
		}
	}
	return c, nil
}

func (c *apiClient) get(ctx context.Context, path string, query url.Values, accept string) (*http.Response, error) {
	u := c.base.JoinPath(path)
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u.Redacted(), err)
	}
	return resp, nil
}

// apiFailure turns an error answer into an error naming its code and message.
func apiFailure(resp *http.Response, body []byte) error {
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && (e.Message != "" || e.Error != "") {
		msg := e.Message
		if msg == "" {
			msg = e.Error
		}
		return fmt.Errorf("server answered %d %s: %s", resp.StatusCode, printable(e.Code), printable(msg))
	}
	return fmt.Errorf("server answered %s", resp.Status)
}

// shownStatus is what status prints, from either endpoint's answer.
type shownStatus struct {
	Ref, Image, Digest, Platform, Verdict, Rule, PolicyVersion, DBVersion, Signature string
	EvaluatedAt                                                                      time.Time
	Reasons                                                                          []shownReason
	Findings                                                                         map[string]int
	FindingsTotal                                                                    int
	HasFindings                                                                      bool
	Details                                                                          string
}

type shownReason struct {
	Code    string `json:"code"`
	Verdict string `json:"verdict"`
	Message string `json:"message"`
}

func statusCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	client := addAPIClientFlags(fs)
	failOn := fs.String("fail-on", "block", "`verdict` that exits 1: block, or warn (warn and block)")
	platform := fs.String("platform", "", "`os/arch[/variant]` of an index (default linux/amd64)")
	wait := fs.Duration("wait", 0, "ask for an evaluation when there is none and wait up to this `duration` (max 5m)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: portcullis status REF|DIGEST --server URL [--token-file F] [--fail-on warn]\n\nexit 0: allow or warn; 1: block (warn too with --fail-on warn); 2: no verdict, or an error")
		fs.PrintDefaults()
	}
	target, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *failOn != "block" && *failOn != "warn" {
		fmt.Fprintf(stderr, "status: --fail-on %q: want block or warn\n", *failOn)
		return errUsage
	}
	if *wait < 0 || *wait > 5*time.Minute {
		fmt.Fprintf(stderr, "status: --wait %s: want 0 to 5m\n", *wait)
		return errUsage
	}
	c, err := client.client(*wait + 60*time.Second)
	if err != nil {
		return errExit{exitError, err}
	}
	st, err := fetchStatus(ctx, c, target, *platform, *wait)
	if err != nil {
		return errExit{exitError, err}
	}
	printStatus(stdout, st)
	switch st.Verdict {
	case "allow":
		return nil
	case "warn":
		if *failOn == "warn" {
			return errExit{exitBlocked, nil}
		}
		return nil
	case "block":
		return errExit{exitBlocked, nil}
	}
	return errExit{exitError, fmt.Errorf("no verdict on %s yet (%s)", printable(target), printable(st.Verdict))}
}

// parseInterleaved takes one positional argument with flags before or
// after it ("status REF --server URL", as the usage shows).
func parseInterleaved(fs *flag.FlagSet, args []string) (string, error) {
	var positional []string
	for range len(args) + 1 {
		if err := parseFlags(fs, args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) != 1 {
		fs.Usage()
		return "", errUsage
	}
	return positional[0], nil
}

func fetchStatus(ctx context.Context, c *apiClient, target, platform string, wait time.Duration) (shownStatus, error) {
	if d, err := digest.Parse(target); err == nil {
		return fetchScanStatus(ctx, c, d)
	}
	q := url.Values{"ref": {target}, "findings": {"true"}}
	if platform != "" {
		q.Set("platform", platform)
	}
	if wait > 0 {
		q.Set("evaluate", "true")
		q.Set("wait", wait.String())
	}
	body, err := c.getJSON(ctx, "/api/v1/images", q)
	if err != nil {
		return shownStatus{}, err
	}
	var a struct {
		Ref           string        `json:"ref"`
		Upstream      string        `json:"upstream"`
		Repository    string        `json:"repository"`
		Digest        string        `json:"digest"`
		Platform      string        `json:"platform"`
		Verdict       string        `json:"verdict"`
		Rule          string        `json:"rule"`
		Reasons       []shownReason `json:"reasons"`
		Signature     string        `json:"signature"`
		PolicyVersion string        `json:"policy_version"`
		DBVersion     string        `json:"db_version"`
		EvaluatedAt   time.Time     `json:"evaluated_at"`
		Findings      *struct {
			Total      int            `json:"total"`
			BySeverity map[string]int `json:"by_severity"`
		} `json:"findings"`
		Details string `json:"details"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return shownStatus{}, fmt.Errorf("read the answer: %w", err)
	}
	st := shownStatus{Ref: a.Ref, Image: a.Upstream + "/" + a.Repository, Digest: a.Digest, Platform: a.Platform,
		Verdict: a.Verdict, Rule: a.Rule, Reasons: a.Reasons, Signature: a.Signature, PolicyVersion: a.PolicyVersion,
		DBVersion: a.DBVersion, EvaluatedAt: a.EvaluatedAt, Details: a.Details}
	if a.Findings != nil {
		st.HasFindings, st.FindingsTotal, st.Findings = true, a.Findings.Total, a.Findings.BySeverity
	}
	return st, nil
}

// fetchScanStatus reads a digest's scan and the verdict shown with it
// (in the repository it was first scanned for).
func fetchScanStatus(ctx context.Context, c *apiClient, d digest.Digest) (shownStatus, error) {
	body, err := c.getJSON(ctx, "/api/v1/scans/"+d.String(), nil)
	if err != nil {
		return shownStatus{}, err
	}
	var a struct {
		Digest    string `json:"digest"`
		State     string `json:"state"`
		DBVersion string `json:"dbVersion"`
		VerdictIn string `json:"verdictIn"`
		Verdict   string `json:"verdict"`
		Rule      string `json:"rule"`
		Decision  *struct {
			Effective string        `json:"effective"`
			Reasons   []shownReason `json:"reasons"`
		} `json:"decision"`
		Signature *struct {
			State string `json:"state"`
		} `json:"signature"`
		PolicyVersion string `json:"policyVersion"`
		Findings      []struct {
			Severity string `json:"severity"`
		} `json:"findings"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return shownStatus{}, fmt.Errorf("read the answer: %w", err)
	}
	st := shownStatus{Image: a.VerdictIn, Digest: a.Digest, Rule: a.Rule, PolicyVersion: a.PolicyVersion, DBVersion: a.DBVersion,
		Verdict: "pending", Details: "/api/v1/scans/" + a.Digest}
	if a.Decision != nil {
		st.Verdict, st.Reasons = a.Verdict, a.Decision.Reasons
	} else if a.State == "failed" {
		st.Verdict = "unknown"
	}
	if a.Signature != nil {
		st.Signature = a.Signature.State
	}
	if a.Findings != nil {
		st.HasFindings, st.FindingsTotal, st.Findings = true, len(a.Findings), map[string]int{}
		for _, f := range a.Findings {
			st.Findings[f.Severity]++
		}
	}
	return st, nil
}

// getJSON reads an API answer (200 or 202), or the error it carries.
func (c *apiClient) getJSON(ctx context.Context, path string, q url.Values) ([]byte, error) {
	resp, err := c.get(ctx, path, q, "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusBody+1))
	if err != nil {
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	if len(body) > maxStatusBody {
		return nil, fmt.Errorf("the answer is larger than %d bytes", maxStatusBody)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return nil, apiFailure(resp, body)
	}
	return body, nil
}

func printStatus(w io.Writer, st shownStatus) {
	line := func(label, value string) {
		if value != "" {
			fmt.Fprintf(w, "%-10s %s\n", label+":", printable(value))
		}
	}
	line("image", st.Ref)
	if st.Ref == "" {
		line("image", st.Image)
	} else if st.Image != "/" {
		line("resolved", st.Image+"@"+st.Digest)
	}
	line("digest", st.Digest)
	line("platform", st.Platform)
	verdict := strings.ToUpper(st.Verdict)
	if st.Rule != "" {
		verdict += " (rule " + st.Rule + ")"
	}
	line("verdict", verdict)
	line("signature", st.Signature)
	line("policy", st.PolicyVersion)
	line("database", st.DBVersion)
	if !st.EvaluatedAt.IsZero() {
		line("evaluated", st.EvaluatedAt.UTC().Format(time.RFC3339))
	}
	if st.HasFindings {
		sevs := make([]string, 0, len(st.Findings))
		for s := range st.Findings {
			sevs = append(sevs, s)
		}
		sort.Slice(sevs, func(i, j int) bool { return severityOrder(sevs[i]) < severityOrder(sevs[j]) })
		parts := make([]string, len(sevs))
		for i, s := range sevs {
			parts[i] = fmt.Sprintf("%d %s", st.Findings[s], s)
		}
		summary := fmt.Sprint(st.FindingsTotal)
		if len(parts) > 0 {
			summary += " (" + strings.Join(parts, ", ") + ")"
		}
		line("findings", summary)
	}
	if len(st.Reasons) > 0 {
		fmt.Fprintln(w, "reasons:")
		for _, r := range st.Reasons {
			fmt.Fprintf(w, "  %s [%s] %s\n", printable(r.Code), printable(r.Verdict), printable(r.Message))
		}
	}
	line("details", st.Details)
}

func severityOrder(s string) int {
	for i, v := range []string{"CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"} {
		if s == v {
			return i
		}
	}
	return 5
}

// printable keeps a server's text from driving the terminal: control
// characters become '?'.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

func eventsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	client := addAPIClientFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "events: unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	c, err := client.client(30 * time.Second)
	if err != nil {
		return errExit{exitError, err}
	}
	c.http.Timeout = 0 // the stream lasts until interrupted
	resp, err := c.get(ctx, "/api/v1/events", nil, "text/event-stream")
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return errExit{exitError, err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return errExit{exitError, apiFailure(resp, body)}
	}
	// The server subscribed before answering: nothing from here on is missed.
	fmt.Fprintf(stderr, "following events from %s (interrupt to stop)\n", printable(c.base.Redacted()))
	err = followEvents(resp.Body, stdout)
	if ctx.Err() != nil {
		return nil // interrupted: the normal end
	}
	if err == nil {
		err = errors.New("the server closed the event stream")
	}
	return errExit{exitError, err}
}

// followEvents prints each server-sent event as one line until the
// stream ends: https://html.spec.whatwg.org/multipage/server-sent-events.html
func followEvents(r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	var event, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data != "" {
				fmt.Fprintln(w, formatEvent(event, data))
			}
			event, data = "", ""
		case strings.HasPrefix(line, ":"): // comment, keep-alive
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			if len(data) < maxEventLine {
				if data != "" {
					data += "\n"
				}
				data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read the event stream: %w", err)
	}
	return nil
}

// formatEvent renders one event for people: time, type, image, what happened.
func formatEvent(event, data string) string {
	var e pipeline.Event
	if json.Unmarshal([]byte(data), &e) != nil || e.Type == "" {
		return printable(strings.TrimSpace(event + " " + data))
	}
	at := e.At.UTC().Format(time.RFC3339)
	switch e.Type {
	case "verdict":
		from := e.From
		if from == "" {
			from = "(none)"
		}
		s := fmt.Sprintf("%s verdict %s %s -> %s", at, e.Image, from, e.To)
		if len(e.Reasons) > 0 {
			s += " (" + strings.Join(e.Reasons, ", ") + ")"
		}
		return printable(s)
	case "scan":
		return printable(fmt.Sprintf("%s scan %s %s, %d findings", at, e.Image, e.State, e.Findings))
	}
	return printable(fmt.Sprintf("%s %s %s", at, e.Type, e.Image))
}
