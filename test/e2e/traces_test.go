package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/fixtures"
	"github.com/portcullis/portcullis/test/otlpreceiver"
	"github.com/portcullis/portcullis/test/testregistry"
)

// spanTree indexes received spans.
type spanTree struct{ spans []otlpreceiver.Span }

// children lists the spans whose parent is s.
func (tr spanTree) children(s otlpreceiver.Span) []otlpreceiver.Span {
	var out []otlpreceiver.Span
	for _, c := range tr.spans {
		if c.ParentSpanID == s.SpanID && c.TraceID == s.TraceID {
			out = append(out, c)
		}
	}
	return out
}

// find lists the spans called name whose attributes include attrs.
func (tr spanTree) find(name string, attrs map[string]string) []otlpreceiver.Span {
	var out []otlpreceiver.Span
	for _, s := range tr.spans {
		if s.Name != name {
			continue
		}
		ok := true
		for k, v := range attrs {
			if s.Attrs[k] != v {
				ok = false
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

// one is find that wants exactly one span.
func (tr spanTree) one(t *testing.T, name string, attrs map[string]string) otlpreceiver.Span {
	t.Helper()
	got := tr.find(name, attrs)
	if len(got) != 1 {
		t.Fatalf("%d spans %s %v, want 1; received: %s", len(got), name, attrs, otlpreceiver.Names(tr.spans))
	}
	return got[0]
}

// childNamed finds the child of parent called name with attrs.
func (tr spanTree) childNamed(t *testing.T, parent otlpreceiver.Span, name string, attrs map[string]string) []otlpreceiver.Span {
	t.Helper()
	var out []otlpreceiver.Span
	for _, c := range tr.children(parent) {
		if c.Name != name {
			continue
		}
		ok := true
		for k, v := range attrs {
			ok = ok && c.Attrs[k] == v
		}
		if ok {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		t.Errorf("%s (%s) has no child %s %v; its children: %s", parent.Name, parent.SpanID, name, attrs, otlpreceiver.Names(tr.children(parent)))
	}
	return out
}

// requestLogLines reads portcullis' JSON request log lines.
func requestLogLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "request" {
			out = append(out, line)
		}
	}
	return out
}

// A pull exported over OTLP: each request is a span tree (the server span,
// the cache look-up, the upstream fetch with one span per HTTP attempt and
// the token flow, the commit), a client's traceparent is honoured and its
// trace id lands in the request log line, and the evaluation the pull
// queued is a trace of its own (image and layer reads, extraction,
// matching, signature verification, policy), linked to the pull, as is the
// publication of its verdict.
func TestTracesOfAPullAndItsEvaluation(t *testing.T) {
	rcv := otlpreceiver.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_SDK_DISABLED", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_TRACES_SAMPLER", "")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100") // milliseconds

	// Anonymous bearer tokens, like Docker Hub: every scope is a token
	// request.
	up := testregistry.Start(t, testregistry.WithTokenAuth("", ""))
	appImg := ociImage(t, 2048)
	app := up.Push(t, "team/app", "1.0", appImg)
	pub := fixtures.SignWithKey(t, up, "team/app", app.String())
	other := ociImage(t, 1024)
	up.Push(t, "team/other", "1.0", other)
	otherLayer := layers(t, other)[0].String()

	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(`
rules:
  - name: signed
    match: {upstreams: [up.test]}
    signature: {required: true, keys: [`+pub+`], tlog: false}
    on_unscanned: {wait: 30s, then: block}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	pc := withConfig(t, up, "default_upstream: up.test\nupstreams: [{name: up.test, url: UPSTREAM_URL}]\npolicy: "+policyFile+"\n")

	// The tag's first fetch meets a 503 once: a retry.
	up.Fail(`^/v2/team/app/manifests/1\.0$`, 503, 1, "")
	out, err := exec.Command("go", "tool", "crane", "pull", "--insecure", strings.TrimPrefix(pc.URL, "http://")+"/team/app:1.0", filepath.Join(t.TempDir(), "img.tar")).CombinedOutput()
	if err != nil {
		t.Fatalf("crane pull: %v\n%s", err, out)
	}

	// A client in a trace of its own asks for a blob nobody fetched yet,
	// then again.
	const (
		clientTrace = "0af7651916cd43dd8448eb211c80319c"
		missParent  = "b7ad6b7169203331"
		hitParent   = "c7ad6b7169203332"
	)
	blobURL := pc.URL + "/v2/team/other/blobs/" + otherLayer
	for i, parent := range []string{missParent, hitParent} {
		if i == 1 {
			// The commit follows the last byte served: wait for it, so
			// the second request is a cache hit, not a join.
			for deadline := time.Now().Add(30 * time.Second); !cachedBlobs(t, pc.DataDir)[otherLayer]; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("blob %s not committed within 30 s", otherLayer)
				}
			}
		}
		r := do(t, "GET", blobURL, "traceparent", "00-"+clientTrace+"-"+parent+"-01")
		if r.err != nil || r.status != 200 {
			t.Fatalf("GET blob: %d %v", r.status, r.err)
		}
	}

	tree := spanTree{rcv.WaitFor(t, 60*time.Second, "evaluation, publication and request spans", func(spans []otlpreceiver.Span) bool {
		tr := spanTree{spans}
		return len(tr.find("evaluate", map[string]string{"portcullis.digest": app.String()})) == 1 &&
			len(tr.find("policy.evaluate", map[string]string{"portcullis.repository": "team/app"})) > 0 &&
			len(tr.find("publish", map[string]string{"portcullis.digest": app.String()})) > 0 &&
			len(tr.find("GET blob", map[string]string{"portcullis.repository": "team/other"})) == 2
	})}
	for _, s := range tree.spans {
		if s.Service != "portcullis" {
			t.Fatalf("span %s from service %q, want portcullis", s.Name, s.Service)
		}
	}

	t.Run("manifest request", func(t *testing.T) {
		req := tree.one(t, "GET manifest", map[string]string{"portcullis.repository": "team/app", "portcullis.cache": "miss"})
		if req.ParentSpanID != "" || req.Kind.String() != "SPAN_KIND_SERVER" {
			t.Errorf("manifest request span: parent %q kind %v, want a server root", req.ParentSpanID, req.Kind)
		}
		for k, v := range map[string]string{"portcullis.route": "manifest", "portcullis.upstream": "up.test", "http.response.status_code": "200", "http.request.method": "GET"} {
			if req.Attrs[k] != v {
				t.Errorf("manifest request %s = %q, want %q", k, req.Attrs[k], v)
			}
		}
		fetches := tree.childNamed(t, req, "upstream.fetch", map[string]string{"url.path": "/v2/team/app/manifests/1.0"})
		tree.childNamed(t, req, "cache.commit", nil)
		if len(fetches) != 1 {
			t.Fatalf("%d manifest fetches under the request, want 1", len(fetches))
		}
		fetch := fetches[0]
		// 401 (then the token), 503 (then a retry), 200.
		tree.childNamed(t, fetch, "upstream.token", nil)
		var statuses []string
		for n, want := range []string{"401", "503", "200"} {
			a := tree.childNamed(t, fetch, "upstream.attempt", map[string]string{"portcullis.attempt": itoa(n + 1)})
			if len(a) == 1 {
				statuses = append(statuses, a[0].Attrs["http.response.status_code"])
				if a[0].Attrs["http.response.status_code"] != want {
					t.Errorf("attempt %d answered %s, want %s", n+1, a[0].Attrs["http.response.status_code"], want)
				}
			}
		}
		if n := len(tree.childNamed(t, fetch, "upstream.attempt", nil)); n != 3 {
			t.Errorf("%d attempts under the fetch (%v), want 3", n, statuses)
		}
	})

	t.Run("blob requests with a traceparent", func(t *testing.T) {
		miss := tree.one(t, "GET blob", map[string]string{"portcullis.repository": "team/other", "portcullis.cache": "miss"})
		hit := tree.one(t, "GET blob", map[string]string{"portcullis.repository": "team/other", "portcullis.cache": "hit"})
		for _, c := range []struct {
			span   otlpreceiver.Span
			parent string
		}{{miss, missParent}, {hit, hitParent}} {
			if c.span.TraceID != clientTrace || c.span.ParentSpanID != c.parent {
				t.Errorf("blob request span in trace %s under %s, want the client's %s under %s", c.span.TraceID, c.span.ParentSpanID, clientTrace, c.parent)
			}
		}
		tree.childNamed(t, miss, "cache.lookup", map[string]string{"portcullis.cache": "miss", "portcullis.digest": otherLayer})
		fetch := tree.childNamed(t, miss, "upstream.fetch", map[string]string{"url.path": "/v2/team/other/blobs/" + otherLayer})
		tree.childNamed(t, miss, "cache.commit", map[string]string{"portcullis.digest": otherLayer})
		if len(fetch) == 1 {
			// A new repository is a new token scope.
			tree.childNamed(t, fetch[0], "upstream.token", nil)
			tree.childNamed(t, fetch[0], "upstream.attempt", map[string]string{"portcullis.attempt": "1", "http.response.status_code": "401"})
			tree.childNamed(t, fetch[0], "upstream.attempt", map[string]string{"portcullis.attempt": "2", "http.response.status_code": "200"})
		}
		tree.childNamed(t, hit, "cache.lookup", map[string]string{"portcullis.cache": "hit"})
		if n := len(tree.children(hit)); n != 1 {
			t.Errorf("cached blob request has %d children (%s), want only the look-up", n, otlpreceiver.Names(tree.children(hit)))
		}

		// The request log line carries the ids.
		found := map[string]bool{}
		for _, line := range requestLogLines(t, pc.Logs.String()) {
			if line["path"] != "/v2/team/other/blobs/"+otherLayer {
				continue
			}
			if line["trace_id"] != clientTrace {
				t.Errorf("request log line trace_id %v, want %s", line["trace_id"], clientTrace)
			}
			if id, _ := line["span_id"].(string); id != "" {
				found[id] = true
			}
		}
		if !found[miss.SpanID] || !found[hit.SpanID] {
			t.Errorf("request log span ids %v, want %s and %s", found, miss.SpanID, hit.SpanID)
		}
	})

	t.Run("evaluation", func(t *testing.T) {
		eval := tree.one(t, "evaluate", map[string]string{"portcullis.digest": app.String()})
		if eval.ParentSpanID != "" {
			t.Errorf("evaluation span has parent %s, want a root", eval.ParentSpanID)
		}
		// Linked to the pull that queued it.
		req := tree.one(t, "GET manifest", map[string]string{"portcullis.repository": "team/app", "portcullis.cache": "miss"})
		if len(eval.Links) != 1 || eval.Links[0].TraceID != req.TraceID {
			t.Errorf("evaluation links %v, want the pull's trace %s", eval.Links, req.TraceID)
		}
		tree.childNamed(t, eval, "image.read", nil)
		extract := tree.childNamed(t, eval, "scan.extract", nil)
		tree.childNamed(t, eval, "vuln.match", nil)
		tree.childNamed(t, eval, "signature.verify", map[string]string{"portcullis.signature": "verified"})
		tree.childNamed(t, eval, "policy.evaluate", map[string]string{"portcullis.verdict": "allow", "portcullis.rule": "signed"})
		if len(extract) == 1 {
			reads := tree.childNamed(t, extract[0], "layer.read", nil)
			if len(reads) != 2 {
				t.Errorf("%d layer reads under the extraction, want 2", len(reads))
			}
		}
		// The layers were first fetched by the evaluation (the pull waited
		// for its verdict): those fetches are in its trace.
		var fetched int
		for _, l := range layers(t, appImg) {
			for _, f := range tree.find("upstream.fetch", map[string]string{"url.path": "/v2/team/app/blobs/" + l.String()}) {
				if f.TraceID == eval.TraceID {
					fetched++
				}
			}
		}
		if fetched != 2 {
			t.Errorf("%d layer fetches in the evaluation's trace, want 2", fetched)
		}
	})

	t.Run("publication", func(t *testing.T) {
		pubSpans := tree.find("publish", map[string]string{"portcullis.digest": app.String()})
		eval := tree.one(t, "evaluate", map[string]string{"portcullis.digest": app.String()})
		linked := false
		for _, s := range pubSpans {
			if s.ParentSpanID != "" {
				t.Errorf("publish span has parent %s, want a root", s.ParentSpanID)
			}
			for _, l := range s.Links {
				linked = linked || l.TraceID == eval.TraceID
			}
		}
		if !linked {
			t.Errorf("no publication linked to the evaluation's trace %s", eval.TraceID)
		}
	})
}
