package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/store"
)

const (
	// controlPageSize is the page the ls commands ask for (the server's
	// most).
	controlPageSize = 1000
	// maxControlPages bounds an ls walk: past the store's bounds on
	// quarantines and exceptions (100,000 each) and the audit log's
	// (1,000,000 records).
	maxControlPages = store.MaxAuditRecords/controlPageSize + 1
	// controlTimeout bounds one call.
	controlTimeout = 60 * time.Second
)

// send makes one API call with an optional JSON body and reads the answer
// (bounded); an error answer becomes an error with the server's message.
func (c *apiClient) send(ctx context.Context, method, path string, query url.Values, in, out any) error {
	u := c.base.JoinPath(path)
	u.RawQuery = query.Encode()
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusBody+1))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, u.Redacted(), err)
	}
	if len(raw) > maxStatusBody {
		return fmt.Errorf("%s %s: answer over %d bytes", method, u.Redacted(), maxStatusBody)
	}
	if resp.StatusCode >= 300 {
		return apiFailure(resp, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: answer is not what the API returns: %w", method, u.Redacted(), err)
		}
	}
	return nil
}

// controlFlags parses a control command's flags and its positional
// arguments (want of them), printing usage on a mistake.
func controlFlags(fs *flag.FlagSet, args []string, want int) ([]string, *apiClient, error) {
	client := addAPIClientFlags(fs)
	var positional []string
	for range len(args) + 1 {
		if err := parseFlags(fs, args); err != nil {
			return nil, nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) != want {
		fs.Usage()
		return nil, nil, errUsage
	}
	c, err := client.client(controlTimeout)
	if err != nil {
		return nil, nil, err
	}
	return positional, c, nil
}

func newControlFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: portcullis %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// flagTime reads a time flag: RFC 3339, or a positive duration (12h,
// 30d) counted from now, forward or, with ago, back.
func flagTime(s string, now time.Time, ago bool) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), true
	}
	d, err := config.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, false
	}
	if ago {
		d = -d
	}
	return now.Add(d).UTC(), true
}

// expiryFlag turns --expires (RFC 3339, or a duration from now: 12h, 30d)
// into RFC 3339.
func expiryFlag(s string, now time.Time) (string, error) {
	if s == "" {
		return "", nil
	}
	t, ok := flagTime(s, now, false)
	if !ok {
		return "", fmt.Errorf("--expires %q: want an RFC 3339 time or a duration from now (12h, 30d)", s)
	}
	return t.Format(time.RFC3339), nil
}

func quarantineCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	switch args[0] {
	case "add":
		fs := newControlFlagSet("quarantine add", "DIGEST --reason R [--expires RFC3339|DURATION] --server URL [--token-file F]", stderr)
		reason := fs.String("reason", "", "why (required; one line, recorded in the audit log)")
		expires := fs.String("expires", "", "when it lifts itself: RFC 3339 or a duration from now (12h, 30d); default never")
		pos, c, err := controlFlags(fs, args[1:], 1)
		if err != nil {
			return err
		}
		until, err := expiryFlag(*expires, time.Now())
		if err != nil {
			fmt.Fprintln(stderr, "quarantine add:", err)
			return errUsage
		}
		var out api.QuarantineAnswer
		in := map[string]string{"digest": pos[0], "reason": *reason}
		if until != "" {
			in["expires"] = until
		}
		if err := c.send(ctx, http.MethodPost, "/api/v1/quarantine", nil, in, &out); err != nil {
			return err
		}
		verb := "quarantined"
		if out.Replaced {
			verb = "quarantine replaced:"
		}
		fmt.Fprintf(stdout, "%s %s (until %s)\n", verb, printable(out.Digest), untilText(out.Expires))
		if !out.Seen {
			fmt.Fprintln(stdout, "note: this mirror has not seen that digest yet; it is blocked when it arrives")
		}
		return nil
	case "rm":
		fs := newControlFlagSet("quarantine rm", "DIGEST --server URL [--token-file F]", stderr)
		pos, c, err := controlFlags(fs, args[1:], 1)
		if err != nil {
			return err
		}
		var out store.Quarantine
		if err := c.send(ctx, http.MethodDelete, "/api/v1/quarantine/"+pos[0], nil, nil, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "lifted the quarantine of %s (%s)\n", printable(out.Digest), printable(out.Reason))
		return nil
	}
	fs := newControlFlagSet("quarantine ls", "--server URL [--token-file F]", stderr)
	_, c, err := controlFlags(fs, args[1:], 0)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "DIGEST\tEXPIRES\tBY\tREASON")
	return walkPages(ctx, c, "/api/v1/quarantine", nil, func(raw json.RawMessage) (string, error) {
		var page api.QuarantineList
		err := json.Unmarshal(raw, &page)
		for _, q := range page.Quarantines {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", printable(q.Digest), untilText(q.Expires), printable(q.CreatedBy), printable(q.Reason))
		}
		return page.Next, err
	})
}

func exceptionCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	switch args[0] {
	case "add":
		fs := newControlFlagSet("exception add", "DIGEST --reason R --expires RFC3339|DURATION [--repository GLOB] --server URL [--token-file F]", stderr)
		reason := fs.String("reason", "", "why (required; one line, recorded in the audit log)")
		expires := fs.String("expires", "", "when it ends (required): RFC 3339 or a duration from now (12h, 30d), at most exceptions.max_duration")
		repository := fs.String("repository", "", "only in the repositories this `glob` over upstream/repository matches (docker.io/team/*); default all")
		pos, c, err := controlFlags(fs, args[1:], 1)
		if err != nil {
			return err
		}
		until, err := expiryFlag(*expires, time.Now())
		if err == nil && until == "" {
			err = errors.New("--expires is required: every exception ends")
		}
		if err != nil {
			fmt.Fprintln(stderr, "exception add:", err)
			return errUsage
		}
		in := map[string]string{"digest": pos[0], "reason": *reason, "expires": until}
		if *repository != "" {
			in["repository"] = *repository
		}
		var out store.Exception
		if err := c.send(ctx, http.MethodPost, "/api/v1/exceptions", nil, in, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "exception %s for %s (until %s)\n", printable(out.ID), printable(out.Digest), untilText(out.Expires))
		return nil
	case "rm":
		fs := newControlFlagSet("exception rm", "ID --server URL [--token-file F]", stderr)
		pos, c, err := controlFlags(fs, args[1:], 1)
		if err != nil {
			return err
		}
		var out store.Exception
		if err := c.send(ctx, http.MethodDelete, "/api/v1/exceptions/"+pos[0], nil, nil, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "withdrew exception %s for %s\n", printable(out.ID), printable(out.Digest))
		return nil
	}
	fs := newControlFlagSet("exception ls", "--server URL [--token-file F]", stderr)
	_, c, err := controlFlags(fs, args[1:], 0)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "ID\tDIGEST\tREPOSITORY\tEXPIRES\tBY\tREASON")
	return walkPages(ctx, c, "/api/v1/exceptions", nil, func(raw json.RawMessage) (string, error) {
		var page api.ExceptionList
		err := json.Unmarshal(raw, &page)
		for _, e := range page.Exceptions {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\t%s\t%s\n", printable(e.ID), printable(e.Digest), printable(cmpOrStar(e.Repository)),
				untilText(e.Expires), printable(e.CreatedBy), printable(e.Reason))
		}
		return page.Next, err
	})
}

func auditCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newControlFlagSet("audit ls", "[--since RFC3339|DURATION] [--kind K] --server URL [--token-file F]", stderr)
	since := fs.String("since", "", "only records from this RFC 3339 time, or this long ago (24h, 7d)")
	kind := fs.String("kind", "", "only records of this kind: "+strings.Join(store.AuditKinds(), ", "))
	_, c, err := controlFlags(fs, args[1:], 0)
	if err != nil {
		return err
	}
	q := url.Values{}
	if *kind != "" {
		if !slices.Contains(store.AuditKinds(), *kind) {
			fmt.Fprintf(stderr, "audit ls: --kind %q: want one of %s\n", *kind, strings.Join(store.AuditKinds(), ", "))
			return errUsage
		}
		q.Set("kind", *kind)
	}
	if *since != "" {
		t, ok := flagTime(*since, time.Now(), true)
		if !ok {
			fmt.Fprintf(stderr, "audit ls: --since %q: want an RFC 3339 time or a duration ago (24h, 7d)\n", *since)
			return errUsage
		}
		q.Set("since", t.Format(time.RFC3339))
	}
	fmt.Fprintln(stdout, "AT\tKIND\tWHO\tWHAT\tWHY")
	return walkPages(ctx, c, "/api/v1/audit", q, func(raw json.RawMessage) (string, error) {
		var page api.AuditList
		err := json.Unmarshal(raw, &page)
		for _, r := range page.Records {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\t%s\n", r.At.UTC().Format(time.RFC3339), printable(r.Kind), printable(r.Who), printable(r.What), printable(r.Why))
		}
		return page.Next, err
	})
}

// walkPages reads a listing a page at a time, bounded; each returns the
// cursor of the next one ("": done).
func walkPages(ctx context.Context, c *apiClient, path string, q url.Values, page func(json.RawMessage) (string, error)) error {
	if q == nil {
		q = url.Values{}
	}
	q.Set("limit", fmt.Sprint(controlPageSize))
	seen := map[string]bool{}
	for range maxControlPages {
		var raw json.RawMessage
		if err := c.send(ctx, http.MethodGet, path, q, nil, &raw); err != nil {
			return err
		}
		next, err := page(raw)
		if err != nil {
			return fmt.Errorf("GET %s: answer is not what the API returns: %w", path, err)
		}
		if next == "" {
			return nil
		}
		if seen[next] {
			return fmt.Errorf("GET %s: the server sent cursor %q twice", path, printable(next))
		}
		seen[next] = true
		q.Set("cursor", next)
	}
	return fmt.Errorf("GET %s: more than %d pages", path, maxControlPages)
}

func untilText(t time.Time) string {
	if t.IsZero() {
		return "lifted by hand"
	}
	return t.UTC().Format(time.RFC3339)
}

func cmpOrStar(s string) string {
	if s == "" {
		return "*"
	}
	return s
}
