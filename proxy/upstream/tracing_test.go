package upstream_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/test/testregistry"
)

func spanAttr(s sdktrace.ReadOnlySpan, key string) attribute.Value {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// A blob fetch is an upstream.fetch span that lasts until its body is
// closed, with one upstream.attempt child per HTTP request (the 401, the
// injected 503 and the 200, numbered 1 to 3) and the token request as
// another child.
func TestFetchSpans(t *testing.T) {
	reg := testregistry.Start(t, testregistry.WithTokenAuth("", ""))
	img := testregistry.RandomImage(t, 1, 4096, types.OCIManifestSchema1)
	reg.Push(t, "team/app", "1.0", img)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	h, err := ls[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	d := digest.Digest(h.String())
	reg.Fail("/blobs/"+d.String()+"$", 503, 1, "")

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	c, err := upstream.New(upstream.Config{Name: "up.test", URL: reg.URL(), Tracer: tp.Tracer("test")})
	if err != nil {
		t.Fatal(err)
	}
	body, _, err := c.GetBlob(context.Background(), "team/app", d)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range rec.Ended() {
		if s.Name() == "upstream.fetch" {
			t.Fatal("fetch span ended before its body was read")
		}
	}
	n, err := io.Copy(io.Discard, body)
	if err != nil {
		t.Fatal(err)
	}
	body.Close()
	body.Close() // twice: the span ends once

	var fetch sdktrace.ReadOnlySpan
	var attempts, tokens []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "upstream.fetch":
			if fetch != nil {
				t.Fatal("two fetch spans")
			}
			fetch = s
		case "upstream.attempt":
			attempts = append(attempts, s)
		case "upstream.token":
			tokens = append(tokens, s)
		}
	}
	if fetch == nil {
		t.Fatal("no fetch span")
	}
	if got := spanAttr(fetch, "portcullis.bytes").AsInt64(); got != n {
		t.Errorf("fetch span bytes %d, want %d", got, n)
	}
	if got := spanAttr(fetch, "portcullis.upstream").AsString(); got != "up.test" {
		t.Errorf("fetch span upstream %q", got)
	}
	if len(tokens) != 1 || tokens[0].Parent().SpanID() != fetch.SpanContext().SpanID() {
		t.Errorf("%d token spans, want 1 under the fetch", len(tokens))
	}
	want := map[int64]int64{1: 401, 2: 503, 3: 200}
	if len(attempts) != len(want) {
		t.Fatalf("%d attempt spans, want %d", len(attempts), len(want))
	}
	for _, a := range attempts {
		num := spanAttr(a, "portcullis.attempt").AsInt64()
		if got := spanAttr(a, "http.response.status_code").AsInt64(); got != want[num] {
			t.Errorf("attempt %d answered %d, want %d", num, got, want[num])
		}
		if a.Parent().SpanID() != fetch.SpanContext().SpanID() {
			t.Errorf("attempt %d is not under the fetch", num)
		}
	}
}

// Without a tracer (or with the no-op one) nothing changes: the body is the
// transport's own.
func TestNoSpansWithoutTracer(t *testing.T) {
	reg := testregistry.Start(t)
	img := testregistry.RandomImage(t, 1, 256, types.OCIManifestSchema1)
	reg.Push(t, "team/app", "1.0", img)
	c, err := upstream.New(upstream.Config{Name: "up.test", URL: reg.URL()})
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	h, _ := ls[0].Digest()
	body, _, err := c.GetBlob(context.Background(), "team/app", digest.Digest(h.String()))
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	if name := fmt.Sprintf("%T", body); strings.Contains(name, "spanCloser") {
		t.Errorf("body wrapped for spans with tracing off")
	}
}
