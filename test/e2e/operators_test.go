package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/test/harness"
)

// eventWatcher follows /api/v1/events and keeps the data lines of one
// event type.
type eventWatcher struct {
	mu    sync.Mutex
	lines []string
}

func watchEvents(t *testing.T, url, token, eventType string) *eventWatcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("event stream: %v %v", err, resp)
	}
	w := &eventWatcher{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == eventType:
				w.mu.Lock()
				w.lines = append(w.lines, line)
				w.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// waitFor waits (bounded) for a data line containing want.
func (w *eventWatcher) waitFor(t *testing.T, want string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		w.mu.Lock()
		found := slices.ContainsFunc(w.lines, func(l string) bool { return strings.Contains(l, want) })
		n := len(w.lines)
		w.mu.Unlock()
		if found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event containing %q after %v (%d events)", want, within, n)
		}
	}
}

// The operators' CLI against the real server with api.tokens_file: the
// admin token quarantines, lifts, grants and withdraws; the read token
// lists but changes nothing, and says why in the server's words. Every
// change is on the audit log with the token's name, on the event stream
// and at the webhook; a policy reload is on the record too.
func TestOperatorsCLIWithTokens(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	dir := t.TempDir()
	write := func(name, content string) string { return writeFileIn(t, dir, name, content) }
	reader, admin := write("reader.token", "reader-token-1\n"), write("admin.token", "admin-token-1\n")
	tokens := write("tokens.yaml", sha([]byte("reader-token-1"))[7:]+": {name: dashboard, scopes: [read]}\n"+
		sha([]byte("admin-token-1"))[7:]+": {name: ci, scopes: [read, admin]}\n")
	rc := startAlertReceiver(t, false)
	g := gateSetupWithUpstream(t, blockingPolicy, "api: {tokens_file: "+tokens+"}", `alerts:
  webhooks:
    - name: chat
      url: `+rc.URL+`/chat
      format: slack
      events: [audit]`)
	// A verdict to waive: the pull is blocked for its vulnerabilities.
	wantError(t, do(t, "GET", g.pc.URL+"/v2/library/alpine/manifests/3.16.9"), http.StatusForbidden, "DENIED")
	events := watchEvents(t, g.pc.URL, "reader-token-1", "audit")

	cli := func(token string, args ...string) (string, int) {
		t.Helper()
		return runExit(t, bin, append(args, "--server", g.pc.URL, "--token-file", token)...)
	}
	ahead := "sha256:" + strings.Repeat("ab", 32) // not seen by this mirror: blocked ahead of arrival
	for _, tc := range []struct {
		token string
		args  []string
		code  int
		want  string
	}{
		{reader, []string{"quarantine", "add", ahead, "--reason", "incident 42"}, 1, "server answered 403 FORBIDDEN: token dashboard lacks the admin scope"},
		{admin, []string{"quarantine", "add", ahead, "--reason", "incident 42", "--expires", "2h"}, 0, "quarantined " + ahead},
		{admin, []string{"quarantine", "add", "sha256:ABC", "--reason", "x"}, 1, "server answered 400 BAD_REQUEST: quarantine: digest"},
		{reader, []string{"quarantine", "ls"}, 0, ahead},
		{reader, []string{"quarantine", "rm", ahead}, 1, "lacks the admin scope"},
		{admin, []string{"quarantine", "rm", ahead}, 0, "lifted the quarantine of " + ahead + " (incident 42)"},
		{admin, []string{"quarantine", "rm", ahead}, 1, "server answered 404 NOT_FOUND: no quarantine of " + ahead},
		{reader, []string{"exception", "add", g.manifest, "--reason", "CVE not reachable", "--expires", "24h"}, 1, "lacks the admin scope"},
		{admin, []string{"exception", "add", g.manifest, "--reason", "CVE not reachable", "--expires", "400d"}, 1, "more than 90d ahead"},
		{admin, []string{"exception", "add", ahead, "--reason", "x", "--expires", "1h"}, 1, "no verdict on " + ahead},
		{admin, []string{"exception", "add", g.manifest, "--reason", "CVE not reachable", "--expires", "24h", "--repository", "docker.io/library/*"}, 0, "exception "},
	} {
		out, code := cli(tc.token, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Fatalf("portcullis %s: exit %d, want %d and %q:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out)
		}
	}
	out, _ := cli(reader, "exception", "ls")
	id := regexp.MustCompile(`(?m)^([0-9a-f]{16})\t` + regexp.QuoteMeta(g.manifest) + `\tdocker.io/library/\*\t`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("exception ls:\n%s", out)
	}
	if out, code := cli(reader, "exception", "rm", id[1]); code != 1 || !strings.Contains(out, "lacks the admin scope") {
		t.Fatalf("%d %s", code, out)
	}
	if out, code := cli(admin, "exception", "rm", id[1]); code != 0 || !strings.Contains(out, "withdrew exception "+id[1]) {
		t.Fatalf("%d %s", code, out)
	}
	if out, _ := cli(reader, "exception", "ls"); strings.Contains(out, id[1]) {
		t.Fatalf("withdrawn exception still listed:\n%s", out)
	}

	// The audit log, through the API and the CLI.
	var audit struct {
		Records []struct{ Kind, Who, What, Why string } `json:"records"`
	}
	r := do(t, "GET", g.pc.URL+"/api/v1/audit", "Authorization", "Bearer reader-token-1")
	if r.status != 200 || json.Unmarshal(r.body, &audit) != nil {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var got []string
	for _, rec := range audit.Records {
		if rec.Kind != "policy_reload" {
			got = append(got, rec.Kind+" "+rec.Who+" "+rec.What+" "+rec.Why)
		}
	}
	want := []string{"quarantine ci " + ahead + " incident 42", "release ci " + ahead + " incident 42",
		"exception ci " + g.manifest + " CVE not reachable", "exception_removed ci " + g.manifest + " CVE not reachable"}
	if !slices.Equal(got, want) {
		t.Fatalf("audit %q, want %q", got, want)
	}
	if out, code := cli(reader, "audit", "ls", "--kind", "release", "--since", "1h"); code != 0 || !strings.Contains(out, "\trelease\tci\t"+ahead+"\tincident 42") || strings.Contains(out, "\tquarantine\t") {
		t.Fatalf("%d %s", code, out)
	}

	// Announced: on the event stream and at the webhook, in one line.
	events.waitFor(t, `"kind":"quarantine"`, 10*time.Second)
	events.waitFor(t, `"kind":"exception_removed"`, 10*time.Second)
	msg := rc.waitFor(t, "/chat", "ci quarantined "+ahead+" : incident 42 (until ", 30*time.Second)
	var slack struct{ Text string }
	if err := json.Unmarshal(msg.body, &slack); err != nil || !strings.HasPrefix(slack.Text, "ci quarantined "+ahead+" : incident 42 (until 20") {
		t.Fatalf("%s", msg.body)
	}
	rc.waitFor(t, "/chat", "ci withdrew exception "+id[1], 30*time.Second)

	// A new policy in force is on the record, by the server itself.
	if err := os.WriteFile(g.policy, []byte(strings.Replace(blockingPolicy, "wait: 30s", "wait: 29s", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r := do(t, "GET", g.pc.URL+"/api/v1/audit?kind=policy_reload", "Authorization", "Bearer reader-token-1")
		if r.status == 200 && strings.Contains(string(r.body), `"who": "portcullis"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no policy_reload record after 30 s: %d %s", r.status, r.body)
		}
	}
	events.waitFor(t, `"kind":"policy_reload"`, 10*time.Second)
}

// Without api.tokens_file a loopback client changes the controls, and the
// audit log names it "loopback" (other clients are refused: see the api
// package's tests, which set the remote address).
func TestOperatorsLoopbackWithoutTokens(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	g := gateSetupWithUpstream(t, blockingPolicy)
	ahead := "sha256:" + strings.Repeat("cd", 32)
	out, err := runBinary(t, bin, "quarantine", "add", ahead, "--reason", "incident 43", "--server", g.pc.URL)
	if err != nil || !strings.Contains(out, "quarantined "+ahead) || !strings.Contains(out, "has not seen that digest yet") {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err = runBinary(t, bin, "audit", "ls", "--server", g.pc.URL)
	if err != nil || !strings.Contains(out, "\tquarantine\tloopback\t"+ahead+"\tincident 43") {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := runBinary(t, bin, "quarantine", "rm", ahead, "--server", g.pc.URL); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// With htpasswd guarding the API and no tokens, a loopback client's change
// is recorded under its htpasswd user.
func TestOperatorsHtpasswdUser(t *testing.T) {
	up := startUpstream(t)
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("pull-pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("puller:$2y"+string(hash[3:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pc := withConfig(t, up, "default_upstream: up.test\nupstreams: [{name: up.test, url: UPSTREAM_URL}]\nauth:\n  htpasswd: "+htpasswd+"\n")
	ahead := "sha256:" + strings.Repeat("ef", 32)
	req, _ := http.NewRequest(http.MethodPost, pc.URL+"/api/v1/quarantine", strings.NewReader(`{"digest":"`+ahead+`","reason":"incident 44"}`))
	req.SetBasicAuth("puller", "pull-pass")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("%d", resp.StatusCode)
	}
	r := do(t, "GET", pc.URL+"/api/v1/audit", "Authorization", "Basic cHVsbGVyOnB1bGwtcGFzcw==") // puller:pull-pass
	if r.status != 200 || !strings.Contains(string(r.body), `"who": "puller"`) || !strings.Contains(string(r.body), `"what": "`+ahead+`"`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
}
