package e2e

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// sendJSON sends body with method to url and returns the answer.
func sendJSON(t *testing.T, method, url, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	return response{status: resp.StatusCode, header: resp.Header, body: raw}
}

// scanUpdatedAt is when the stored scan of d was last written.
func scanUpdatedAt(t *testing.T, url, d string) string {
	t.Helper()
	var rec struct {
		UpdatedAt string `json:"updatedAt"`
	}
	r := do(t, "GET", url+"/api/v1/scans/"+d)
	if r.status != http.StatusOK || json.Unmarshal(r.body, &rec) != nil || rec.UpdatedAt == "" {
		t.Fatalf("scan of %s: %d %s", d, r.status, r.body)
	}
	return rec.UpdatedAt
}

// An operator's quarantine and exception act on real pulls, through the
// HTTP API of the one server that serves them, with quarantine >
// exception > policy: a quarantine refuses an allowed image and its
// layers, in a real client's words, and lifting it restores the policy's
// verdict without a new scan; an exception lets a vulnerable image
// through as warn (its layers too) until a quarantine overrides it or it
// is withdrawn; a quarantine that expires lifts itself, on the record.
func TestQuarantineAndExceptionThroughPulls(t *testing.T) {
	g := gateSetupWithUpstream(t, blockingPolicy)
	img := testregistryImage(t, 1024)
	clean := g.up.Push(t, "library/clean", "1", img).String()
	cleanLayer := layers(t, img)[0].String()
	api := g.pc.URL + "/api/v1"
	pull := func(repo string) response {
		t.Helper()
		return do(t, "GET", g.pc.URL+"/v2/library/"+repo+"/manifests/"+map[string]string{"clean": "1", "alpine": "3.16.9"}[repo])
	}
	wantServed := func(repo, verdict, reason string) {
		t.Helper()
		r := pull(repo)
		if r.status != http.StatusOK || r.header.Get("Portcullis-Verdict") != verdict && verdict != "" ||
			!strings.Contains(r.header.Get("Portcullis-Reason"), reason) {
			t.Fatalf("%s: %d verdict %q reason %q, want 200 %q with %q: %s", repo, r.status, r.header.Get("Portcullis-Verdict"),
				r.header.Get("Portcullis-Reason"), verdict, reason, r.body)
		}
	}
	wantRefused := func(repo, want string) {
		t.Helper()
		if msg := wantError(t, pull(repo), http.StatusForbidden, "DENIED"); !strings.Contains(msg, want) {
			t.Fatalf("%s refused with %q, want %q", repo, msg, want)
		}
	}
	created := func(r response) {
		t.Helper()
		if r.status != http.StatusCreated {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}

	// The policy allows the clean image (the pull waits for its scan).
	wantServed("clean", "", "")
	scanned := scanUpdatedAt(t, g.pc.URL, clean)

	created(sendJSON(t, "POST", api+"/quarantine", `{"digest":"`+clean+`","reason":"incident 7: pulled from a compromised account"}`))
	wantRefused("clean", "quarantined: incident 7: pulled from a compromised account")
	if msg := wantError(t, do(t, "GET", g.pc.URL+"/v2/library/clean/blobs/"+cleanLayer), http.StatusForbidden, "DENIED"); !strings.Contains(msg, clean) {
		t.Fatalf("layer of the quarantined image refused with %q", msg)
	}
	host := strings.TrimPrefix(g.pc.URL, "http://")
	if out, err := exec.Command("go", "tool", "crane", "manifest", "--insecure", host+"/library/clean:1").CombinedOutput(); err == nil || !strings.Contains(string(out), "quarantined") {
		t.Fatalf("crane manifest of a quarantined image: %v\n%s", err, out)
	}
	var view struct {
		Verdict       string `json:"verdict"`
		PolicyVerdict string `json:"policyVerdict"`
		Quarantine    *struct{ Reason, CreatedBy string }
	}
	r := do(t, "GET", api+"/scans/"+clean)
	if json.Unmarshal(r.body, &view) != nil || view.Verdict != "block" || view.PolicyVerdict != "allow" || view.Quarantine == nil ||
		view.Quarantine.CreatedBy != "loopback" {
		t.Fatalf("status of the quarantined image: %s", r.body)
	}

	if r := sendJSON(t, "DELETE", api+"/quarantine/"+clean, ""); r.status != http.StatusOK {
		t.Fatalf("lift: %d %s", r.status, r.body)
	}
	wantServed("clean", "", "")
	if got := scanUpdatedAt(t, g.pc.URL, clean); got != scanned {
		t.Fatalf("lifting the quarantine scanned the image again (scan written at %s, then %s)", scanned, got)
	}

	// The policy blocks Alpine 3.16.9 for its vulnerabilities; an
	// exception lets it through as warn, layers too.
	wantRefused("alpine", "ALPINE-CVE")
	expires := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	created(sendJSON(t, "POST", api+"/exceptions", `{"digest":"`+g.manifest+`","repository":"docker.io/library/*","reason":"not reachable in our build","expires":"`+expires+`"}`))
	wantServed("alpine", "warn", "not reachable in our build")
	if r := do(t, "GET", g.pc.URL+"/v2/library/alpine/blobs/"+g.layer); r.status != http.StatusOK {
		t.Fatalf("layer of an excepted image: %d %s", r.status, r.body)
	}
	created(sendJSON(t, "POST", api+"/quarantine", `{"digest":"`+g.manifest+`","reason":"incident 8"}`))
	wantRefused("alpine", "quarantined: incident 8")
	if r := sendJSON(t, "DELETE", api+"/quarantine/"+g.manifest, ""); r.status != http.StatusOK {
		t.Fatalf("lift: %d %s", r.status, r.body)
	}
	wantServed("alpine", "warn", "not reachable in our build")
	var list struct {
		Exceptions []struct{ ID string } `json:"exceptions"`
	}
	if r := do(t, "GET", api+"/exceptions"); json.Unmarshal(r.body, &list) != nil || len(list.Exceptions) != 1 {
		t.Fatalf("exceptions: %s", r.body)
	}
	if r := sendJSON(t, "DELETE", api+"/exceptions/"+list.Exceptions[0].ID, ""); r.status != http.StatusOK {
		t.Fatalf("withdraw: %d %s", r.status, r.body)
	}
	wantRefused("alpine", "ALPINE-CVE")

	// A quarantine that expires lifts itself, and says so on the record.
	soon := time.Now().Add(3 * time.Second).UTC().Format(time.RFC3339)
	created(sendJSON(t, "POST", api+"/quarantine", `{"digest":"`+clean+`","reason":"until the rebuild","expires":"`+soon+`"}`))
	wantRefused("clean", "until the rebuild")
	for i := 0; pull("clean").status != http.StatusOK; i++ {
		if i == 100 {
			t.Fatal("the quarantine did not lift itself 20 s after it expired")
		}
		time.Sleep(200 * time.Millisecond)
	}
	var audit struct {
		Records []struct{ Kind, Who, What string } `json:"records"`
	}
	for i := 0; ; i++ {
		r := do(t, "GET", api+"/audit?kind=quarantine_expired")
		if json.Unmarshal(r.body, &audit) == nil && len(audit.Records) == 1 {
			break
		}
		if i == 50 {
			t.Fatalf("no quarantine_expired record 10 s after the expiry: %d %s", r.status, r.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rec := audit.Records[0]; rec.What != clean || rec.Who != "portcullis" {
		t.Fatalf("expiry record %+v", rec)
	}

	// Quarantines and the audit log are state: a restart keeps both.
	created(sendJSON(t, "POST", api+"/quarantine", `{"digest":"`+clean+`","reason":"incident 10"}`))
	records := func() int {
		t.Helper()
		var all struct {
			Records []json.RawMessage `json:"records"`
		}
		if r := do(t, "GET", api+"/audit?limit=1000"); r.status != http.StatusOK || json.Unmarshal(r.body, &all) != nil {
			t.Fatalf("audit: %d %s", r.status, r.body)
		}
		return len(all.Records)
	}
	before := records()
	g.pc.Restart(t)
	wantRefused("clean", "quarantined: incident 10")
	if after := records(); after != before {
		t.Fatalf("%d audit records before the restart, %d after", before, after)
	}
}
