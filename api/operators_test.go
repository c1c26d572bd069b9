package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/controls"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

// operatorHandler is a handler over a store holding verdicts (see
// verdictStore), whose audit goes straight to the store.
func operatorHandler(t *testing.T) (*Handler, *store.Bolt) {
	t.Helper()
	st, _ := verdictStore(t, 6)
	h := &Handler{Scans: st, Resolver: fakeResolver{}, Queue: &decidingQueue{st: st}, Events: closedEvents{},
		OperatorStore: st, AuditLog: st,
		Audit: func(ctx context.Context, rec store.AuditRecord) (store.AuditRecord, error) {
			err := st.AppendAudit(ctx, &rec)
			return rec, err
		}}
	return h, st
}

// call sends method path body from remote (host:port) through h.
func call(h http.Handler, method, path, body, remote string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

const loopback = "127.0.0.1:40000"

func future(d time.Duration) string { return time.Now().Add(d).UTC().Format(time.RFC3339) }

// auditOf reads the whole audit log (bounded).
func auditOf(t *testing.T, st store.AuditStore) []store.AuditRecord {
	t.Helper()
	var out []store.AuditRecord
	if err := st.Audit(context.Background(), store.AuditQuery{}, func(r store.AuditRecord) bool {
		out = append(out, r)
		return len(out) < 10000
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// controlsOf counts the stored quarantines and exceptions.
func controlsOf(t *testing.T, st store.ControlStore) (quarantines, exceptions int) {
	t.Helper()
	ctx := context.Background()
	if err := st.Quarantines(ctx, "", func(store.Quarantine) bool { quarantines++; return true }); err != nil {
		t.Fatal(err)
	}
	if err := st.Exceptions(ctx, "", func(store.Exception) bool { exceptions++; return true }); err != nil {
		t.Fatal(err)
	}
	return quarantines, exceptions
}

// Every malformed or refused change answers a clear 4xx and writes
// nothing: no control, no audit record.
func TestOperatorValidation(t *testing.T) {
	h, st := operatorHandler(t)
	ctx := context.Background()
	// testDigest(5) is blocked in docker.io/library/app and
	// docker.io/team/app; make the first of those malware too.
	malware := store.DecisionRecord{Digest: testDigest(5), Upstream: "docker.io", Repository: "library/app", Verdict: string(policy.Block),
		Decision: &policy.Decision{Verdict: policy.Block, Effective: policy.Block, Rule: "r",
			Reasons: []policy.Reason{{Code: policy.CodeMalware, Verdict: policy.Block, Message: "malware Eicar-Test-Signature in /x"}}}}
	if err := st.Decisions(ctx, testDigest(5), func(d store.DecisionRecord) bool {
		if d.Repository == "library/app" {
			malware.Revision = d.Revision
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutDecision(ctx, &malware); err != nil {
		t.Fatal(err)
	}
	quarantined := testDigest(2)
	if err := st.PutQuarantine(ctx, store.Quarantine{Digest: quarantined, Reason: "incident 7", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	d := testDigest(0)
	huge := strings.Repeat("x", 1<<20)
	for _, tc := range []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"malformed digest", "/api/v1/quarantine", `{"digest":"sha256:ABC","reason":"r"}`, 400, "want sha256: and 64 lowercase hex"},
		{"digest of another algorithm", "/api/v1/quarantine", `{"digest":"sha512:` + strings.Repeat("a", 128) + `","reason":"r"}`, 400, "want sha256:"},
		{"missing reason", "/api/v1/quarantine", `{"digest":"` + d + `"}`, 400, "reason is required"},
		{"blank reason", "/api/v1/quarantine", `{"digest":"` + d + `","reason":"  "}`, 400, "reason is required"},
		{"two-line reason", "/api/v1/quarantine", `{"digest":"` + d + `","reason":"a\nb"}`, 400, "one line"},
		{"reason over 4096 bytes", "/api/v1/quarantine", `{"digest":"` + d + `","reason":"` + strings.Repeat("y", 4097) + `"}`, 400, "at most 4096"},
		{"1 MB reason", "/api/v1/quarantine", `{"digest":"` + d + `","reason":"` + huge + `"}`, 413, "request body over 65536 bytes"},
		{"1 MB reason, exception", "/api/v1/exceptions", `{"digest":"` + d + `","reason":"` + huge + `","expires":"` + future(time.Hour) + `"}`, 413, "request body over 65536 bytes"},
		{"expiry in the past", "/api/v1/quarantine", `{"digest":"` + d + `","reason":"r","expires":"2001-01-01T00:00:00Z"}`, 400, "in the past"},
		{"expiry not RFC 3339", "/api/v1/quarantine", `{"digest":"` + d + `","reason":"r","expires":"tomorrow"}`, 400, "RFC 3339"},
		{"unknown field", "/api/v1/quarantine", `{"digest":"` + d + `","reason":"r","until":"x"}`, 400, `unknown field \"until\"`},
		{"two objects", "/api/v1/quarantine", `{"digest":"` + d + `","reason":"r"}{}`, 400, "one JSON object"},
		{"not JSON", "/api/v1/quarantine", `digest=x`, 400, "invalid JSON"},
		{"empty body", "/api/v1/quarantine", ``, 400, "empty body"},
		{"exception without expiry", "/api/v1/exceptions", `{"digest":"` + testDigest(5) + `","reason":"r"}`, 400, "expires is required"},
		{"exception beyond max_duration", "/api/v1/exceptions", `{"digest":"` + testDigest(5) + `","reason":"r","expires":"` + future(91*24*time.Hour) + `"}`, 400, "more than 90d ahead"},
		{"exception in the past", "/api/v1/exceptions", `{"digest":"` + testDigest(5) + `","reason":"r","expires":"2001-01-01T00:00:00Z"}`, 400, "in the past"},
		{"exception with a bad glob", "/api/v1/exceptions", `{"digest":"` + testDigest(5) + `","repository":"docker.io/***","reason":"r","expires":"` + future(time.Hour) + `"}`, 400, "repository: pattern"},
		{"exception unknown field", "/api/v1/exceptions", `{"digest":"` + testDigest(5) + `","reason":"r","expires":"` + future(time.Hour) + `","force":true}`, 400, "unknown field"},
		{"exception of an unknown digest", "/api/v1/exceptions", `{"digest":"` + testDigest(999) + `","reason":"r","expires":"` + future(time.Hour) + `"}`, 404, "no verdict on " + testDigest(999) + ": an exception waives a verdict the policy made; pull it first"},
		{"exception where the glob matches no verdict", "/api/v1/exceptions", `{"digest":"` + testDigest(0) + `","repository":"quay.io/**","reason":"r","expires":"` + future(time.Hour) + `"}`, 404, `in a repository matching \"quay.io/**\"`},
		{"exception of malware", "/api/v1/exceptions", `{"digest":"` + testDigest(5) + `","reason":"r","expires":"` + future(time.Hour) + `"}`, 409, "MALWARE in docker.io/library/app: malware Eicar-Test-Signature"},
		{"exception of a quarantined digest", "/api/v1/exceptions", `{"digest":"` + quarantined + `","reason":"r","expires":"` + future(time.Hour) + `"}`, 409, "is quarantined (incident 7): not waivable"},
		{"delete malformed digest", "/api/v1/quarantine/sha256:xyz", ``, 400, "want sha256:"},
		{"delete unknown quarantine", "/api/v1/quarantine/" + testDigest(4), ``, 404, "no quarantine of " + testDigest(4)},
		{"delete malformed exception id", "/api/v1/exceptions/../x", ``, 404, "no such endpoint"},
		{"delete bad exception id", "/api/v1/exceptions/XYZ", ``, 400, "want the 16 hex digits"},
		{"delete unknown exception", "/api/v1/exceptions/0123456789abcdef", ``, 404, "no exception 0123456789abcdef"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := http.MethodPost
			if tc.body == "" && !strings.HasSuffix(tc.path, "/quarantine") {
				method = http.MethodDelete
			}
			w := call(h, method, tc.path, tc.body, loopback)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.want) {
				t.Fatalf("%d %s, want %d and %q", w.Code, w.Body, tc.status, tc.want)
			}
			if q, e := controlsOf(t, st); q != 1 || e != 0 {
				t.Fatalf("written: %d quarantines, %d exceptions", q, e)
			}
			if got := auditOf(t, st); len(got) != 0 {
				t.Fatalf("audit records: %+v", got)
			}
		})
	}
}

// The exception of a digest blocked only for waivable reasons is granted
// in the repositories its glob names, even when another repository holds
// an unwaivable verdict; its audit record says who, what and until when.
func TestExceptionGranted(t *testing.T) {
	h, st := operatorHandler(t)
	view := controls.New(st, controls.Options{})
	h.Controls = view
	body := `{"digest":"` + testDigest(2) + `","repository":"docker.io/team/*","reason":"CVE-2023-0001 is not reachable","expires":"` + future(24*time.Hour) + `"}`
	w := call(h, http.MethodPost, "/api/v1/exceptions", body, "[::1]:5555")
	if w.Code != http.StatusCreated {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	var e store.Exception
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(e.ID) || e.Digest != testDigest(2) || e.Repository != "docker.io/team/*" || e.CreatedBy != "loopback" {
		t.Fatalf("%+v", e)
	}
	if _, inForce := view.Exception("docker.io", "team/app", testDigest(2)); !inForce {
		t.Fatal("the exception is not in force on the replica that granted it: the view was not refreshed")
	}
	list := call(h, http.MethodGet, "/api/v1/exceptions", "", "192.0.2.1:1")
	if list.Code != 200 || !strings.Contains(list.Body.String(), e.ID) {
		t.Fatalf("%d %s", list.Code, list.Body)
	}
	rm := call(h, http.MethodDelete, "/api/v1/exceptions/"+e.ID, "", loopback)
	if rm.Code != 200 {
		t.Fatalf("%d %s", rm.Code, rm.Body)
	}
	if _, inForce := view.Exception("docker.io", "team/app", testDigest(2)); inForce {
		t.Fatal("the removed exception is still in force on the replica that removed it: the view was not refreshed")
	}
	recs := auditOf(t, st)
	if len(recs) != 2 {
		t.Fatalf("%+v", recs)
	}
	for i, kind := range []string{store.AuditException, store.AuditExceptionRemoved} {
		r := recs[i]
		if r.Kind != kind || r.Who != "loopback" || r.What != testDigest(2) || r.Why != "CVE-2023-0001 is not reachable" ||
			r.Details["exception"] != e.ID || r.Details["repository"] != "docker.io/team/*" || r.Details["expires"] == "" || r.RequestID == "" {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	if q, n := controlsOf(t, st); q != 0 || n != 0 {
		t.Fatalf("%d %d", q, n)
	}
}

// Quarantine, re-quarantine (replaces: 200), lift; an unseen digest is
// accepted and says so; each change is on the record.
func TestQuarantineLifecycle(t *testing.T) {
	h, st := operatorHandler(t)
	h.UserOf = func(context.Context) string { return "alice" }
	unseen := testDigest(500)
	for i, tc := range []struct {
		digest string
		status int
		seen   bool
	}{{testDigest(1), 201, true}, {testDigest(1), 200, true}, {unseen, 201, false}} {
		w := call(h, http.MethodPost, "/api/v1/quarantine", `{"digest":"`+tc.digest+`","reason":"incident `+fmt.Sprint(i)+`","expires":"`+future(time.Hour)+`"}`, loopback)
		var a QuarantineAnswer
		if err := json.Unmarshal(w.Body.Bytes(), &a); w.Code != tc.status || err != nil || a.Seen != tc.seen || a.CreatedBy != "alice" || a.Expires.IsZero() {
			t.Fatalf("%d: %d %s", i, w.Code, w.Body)
		}
	}
	w := call(h, http.MethodDelete, "/api/v1/quarantine/"+testDigest(1), "", loopback)
	if w.Code != 200 || !strings.Contains(w.Body.String(), "incident 1") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if w := call(h, http.MethodDelete, "/api/v1/quarantine/"+testDigest(1), "", loopback); w.Code != 404 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	var kinds []string
	for _, r := range auditOf(t, st) {
		if r.Who != "alice" {
			t.Fatalf("%+v", r)
		}
		kinds = append(kinds, r.Kind+" "+r.What+" "+r.Why)
	}
	want := []string{"quarantine " + testDigest(1) + " incident 0", "quarantine " + testDigest(1) + " incident 1",
		"quarantine " + unseen + " incident 2", "release " + testDigest(1) + " incident 1"}
	if strings.Join(kinds, "|") != strings.Join(want, "|") {
		t.Fatalf("%q", kinds)
	}
}

// Without tokens only loopback clients change anything; everyone reads.
func TestOperatorLoopbackOnly(t *testing.T) {
	h, st := operatorHandler(t)
	for _, remote := range []string{"192.0.2.1:1234", "[2001:db8::1]:99", "10.0.0.1:1", "garbage"} {
		for _, rq := range [][3]string{
			{http.MethodPost, "/api/v1/quarantine", `{"digest":"` + testDigest(1) + `","reason":"r"}`},
			{http.MethodDelete, "/api/v1/quarantine/" + testDigest(1), ""},
			{http.MethodPost, "/api/v1/exceptions", `{"digest":"` + testDigest(2) + `","reason":"r","expires":"` + future(time.Hour) + `"}`},
			{http.MethodDelete, "/api/v1/exceptions/0123456789abcdef", ""},
		} {
			w := call(h, rq[0], rq[1], rq[2], remote)
			if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "needs an admin token (api.tokens_file) or a client on loopback") {
				t.Fatalf("%s %s from %s: %d %s", rq[0], rq[1], remote, w.Code, w.Body)
			}
		}
		for _, path := range []string{"/api/v1/quarantine", "/api/v1/exceptions", "/api/v1/audit"} {
			if w := call(h, http.MethodGet, path, "", remote); w.Code != 200 {
				t.Fatalf("GET %s from %s: %d %s", path, remote, w.Code, w.Body)
			}
		}
	}
	if q, e := controlsOf(t, st); q != 0 || e != 0 {
		t.Fatal(q, e)
	}
}

// With tokens: a read token cannot change anything (403, DELETE too), an
// admin token can, from anywhere, and the audit names the token.
func TestOperatorTokens(t *testing.T) {
	h, st := operatorHandler(t)
	tokens, err := ParseTokens([]byte(hashOf("r3ad") + ": {name: dashboard, scopes: [read]}\n" + hashOf("adm1n") + ": {name: ci, scopes: [admin]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	wrapped := tokens.Wrap(h)
	send := func(method, path, body, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.RemoteAddr = "192.0.2.1:1234"
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		wrapped.ServeHTTP(w, r)
		return w
	}
	if err := st.PutQuarantine(context.Background(), store.Quarantine{Digest: testDigest(3), Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	for _, rq := range [][3]string{
		{http.MethodPost, "/api/v1/quarantine", `{"digest":"` + testDigest(1) + `","reason":"r"}`},
		{http.MethodDelete, "/api/v1/quarantine/" + testDigest(3), ""},
		{http.MethodPost, "/api/v1/exceptions", `{"digest":"` + testDigest(2) + `","reason":"r","expires":"` + future(time.Hour) + `"}`},
		{http.MethodDelete, "/api/v1/exceptions/0123456789abcdef", ""},
	} {
		if w := send(rq[0], rq[1], rq[2], "r3ad"); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "token dashboard lacks the admin scope") {
			t.Fatalf("%s %s: %d %s", rq[0], rq[1], w.Code, w.Body)
		}
	}
	if w := send(http.MethodGet, "/api/v1/quarantine", "", "r3ad"); w.Code != 200 || !strings.Contains(w.Body.String(), testDigest(3)) {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if w := send(http.MethodPost, "/api/v1/quarantine", `{"digest":"`+testDigest(1)+`","reason":"incident"}`, "adm1n"); w.Code != 201 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if w := send(http.MethodDelete, "/api/v1/quarantine/"+testDigest(3), "", "adm1n"); w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	recs := auditOf(t, st)
	if len(recs) != 2 || recs[0].Who != "ci" || recs[1].Who != "ci" || recs[0].Kind != store.AuditQuarantine || recs[1].Kind != store.AuditRelease {
		t.Fatalf("%+v", recs)
	}
}

// A change whose audit record fails stands, and the answer says so.
func TestOperatorAuditFailure(t *testing.T) {
	h, st := operatorHandler(t)
	h.Audit = func(context.Context, store.AuditRecord) (store.AuditRecord, error) {
		return store.AuditRecord{}, errors.New("redis down")
	}
	w := call(h, http.MethodPost, "/api/v1/quarantine", `{"digest":"`+testDigest(1)+`","reason":"r"}`, loopback)
	if w.Code != 500 || !strings.Contains(w.Body.String(), "quarantine of "+testDigest(1)+" is done and in force, but its audit record failed") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if q, _ := controlsOf(t, st); q != 1 {
		t.Fatal(q)
	}
}

// 10,000 quarantines (some expired) list in bounded pages, each one in
// force exactly once, in digest order.
func TestQuarantinePaging(t *testing.T) {
	h, st := operatorHandler(t)
	ctx := context.Background()
	const n = 10000
	for i := range n {
		q := store.Quarantine{Digest: testDigest(i), Reason: "bulk", CreatedAt: time.Now()}
		if i%10 == 3 {
			q.Expires = time.Now().Add(-time.Minute)
		}
		if err := st.PutQuarantine(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if w := call(h, http.MethodGet, "/api/v1/quarantine?limit=1001", "", loopback); w.Code != 400 {
		t.Fatalf("%d", w.Code)
	}
	if w := call(h, http.MethodGet, "/api/v1/quarantine?cursor=nope", "", loopback); w.Code != 400 {
		t.Fatalf("%d", w.Code)
	}
	// The default page is 100.
	var first QuarantineList
	if w := call(h, http.MethodGet, "/api/v1/quarantine", "", loopback); w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &first) != nil || len(first.Quarantines) != 100 || first.Next == "" {
		t.Fatalf("%d %d %q", w.Code, len(first.Quarantines), first.Next)
	}
	seen := map[string]bool{}
	cursor, prev := "", ""
	for page := 0; ; page++ {
		if page > 20 {
			t.Fatal("too many pages")
		}
		w := call(h, http.MethodGet, "/api/v1/quarantine?limit=1000&cursor="+cursor, "", loopback)
		var l QuarantineList
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &l) != nil || len(l.Quarantines) > 1000 {
			t.Fatalf("%d %d", w.Code, len(l.Quarantines))
		}
		for _, q := range l.Quarantines {
			if seen[q.Digest] || q.Digest <= prev || !q.Expires.IsZero() {
				t.Fatalf("%s listed twice, out of order or expired", q.Digest)
			}
			seen[q.Digest], prev = true, q.Digest
		}
		if l.Next == "" {
			break
		}
		cursor = l.Next
	}
	if len(seen) != n-n/10 {
		t.Fatalf("listed %d", len(seen))
	}
}

// The audit log pages oldest first, filters by kind and time, and names
// the kinds when one is unknown.
func TestAuditListing(t *testing.T) {
	h, _ := operatorHandler(t)
	for i := range 5 {
		if w := call(h, http.MethodPost, "/api/v1/quarantine", `{"digest":"`+testDigest(i)+`","reason":"r"}`, loopback); w.Code != 201 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	if w := call(h, http.MethodDelete, "/api/v1/quarantine/"+testDigest(0), "", loopback); w.Code != 200 {
		t.Fatal(w.Code)
	}
	get := func(query string) (AuditList, int, string) {
		w := call(h, http.MethodGet, "/api/v1/audit?"+query, "", "192.0.2.1:1")
		var l AuditList
		if w.Code == 200 {
			if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil {
				t.Fatal(err)
			}
		}
		return l, w.Code, w.Body.String()
	}
	var whats []string
	cursor := ""
	for page := 0; page < 10; page++ {
		l, code, body := get("limit=2&cursor=" + cursor)
		if code != 200 || len(l.Records) > 2 {
			t.Fatalf("%d %s", code, body)
		}
		for _, r := range l.Records {
			whats = append(whats, r.Kind+" "+r.What[len(r.What)-1:])
		}
		if cursor = l.Next; cursor == "" {
			break
		}
	}
	if strings.Join(whats, ",") != "quarantine 1,quarantine 2,quarantine 3,quarantine 4,quarantine 5,release 1" {
		t.Fatalf("%q", whats)
	}
	if l, code, body := get("kind=release"); code != 200 || len(l.Records) != 1 || l.Records[0].Kind != "release" {
		t.Fatalf("%d %s", code, body)
	}
	if l, code, body := get("since=" + future(time.Hour)); code != 200 || len(l.Records) != 0 {
		t.Fatalf("%d %s", code, body)
	}
	if l, code, body := get("since=2001-01-01T00:00:00Z&kind=quarantine"); code != 200 || len(l.Records) != 5 {
		t.Fatalf("%d %s", code, body)
	}
	for query, want := range map[string]string{
		"kind=nuke":          "unknown ?kind=\\\"nuke\\\": want one of quarantine, release, quarantine_expired, exception",
		"since=yesterday":    "RFC 3339",
		"limit=0":            "want 1 to 1000",
		"cursor=zz-not-ours": "invalid cursor",
		"kind=a&kind=b":      "given more than once",
	} {
		if _, code, body := get(query); code != 400 || !strings.Contains(body, want) {
			t.Fatalf("%s: %d %s", query, code, body)
		}
	}
}

// FuzzControlBody: no body, however hostile, panics the quarantine and
// exception endpoints or gets a 5xx; a 2xx only for a valid change.
func FuzzControlBody(f *testing.F) {
	for _, s := range []string{`{"digest":"` + testDigest(1) + `","reason":"r"}`, `{"digest":"` + testDigest(2) + `","reason":"r","expires":"2099-01-01T00:00:00Z"}`,
		`{"reason":"\u0000"}`, `[]`, `{"digest":1}`, `{"expires":"9999-99-99T00:00:00Z"}`, `{"repository":"**","digest":"x"}`} {
		f.Add(s, false)
		f.Add(s, true)
	}
	st, _ := verdictStore(f, 3)
	h := &Handler{Scans: st, OperatorStore: st, AuditLog: st}
	f.Fuzz(func(t *testing.T, body string, exception bool) {
		path := "/api/v1/quarantine"
		if exception {
			path = "/api/v1/exceptions"
		}
		w := call(h, http.MethodPost, path, body, loopback)
		if w.Code >= 500 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		if w.Code < 300 && !bytes.Contains([]byte(body), []byte("sha256:")) {
			t.Fatalf("accepted %q: %s", body, w.Body)
		}
	})
}

// exceptions.max_duration bounds how far ahead an exception may expire.
func TestExceptionMaxDuration(t *testing.T) {
	h, _ := operatorHandler(t)
	h.MaxExceptionDuration = 2 * time.Hour
	body := func(ahead time.Duration) string {
		return `{"digest":"` + testDigest(2) + `","reason":"r","expires":"` + future(ahead) + `"}`
	}
	if w := call(h, http.MethodPost, "/api/v1/exceptions", body(3*time.Hour), loopback); w.Code != 400 || !strings.Contains(w.Body.String(), "more than 2h0m0s ahead (exceptions.max_duration)") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if w := call(h, http.MethodPost, "/api/v1/exceptions", body(time.Hour), loopback); w.Code != 201 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}
