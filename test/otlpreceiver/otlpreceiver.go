// Package otlpreceiver is an OTLP/HTTP trace receiver for tests: a net/http
// server on loopback that decodes the protobuf ExportTraceServiceRequest
// bodies an OpenTelemetry exporter posts to /v1/traces and keeps the spans
// (metrics posted to /v1/metrics are accepted and dropped).
package otlpreceiver

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// maxBody bounds one export request (the SDK's batches are far smaller).
const maxBody = 32 << 20

// Span is a received span, ids in lower-case hex as in traceparent.
type Span struct {
	Service      string // the resource's service.name
	TraceID      string
	SpanID       string
	ParentSpanID string // "" for a root
	Name         string
	Kind         tracepb.Span_SpanKind
	Attrs        map[string]string // values as text
	Links        []Link
	StatusError  bool
	Start, End   time.Time
}

// Link is a span link.
type Link struct{ TraceID, SpanID string }

// Receiver is a running receiver.
type Receiver struct {
	URL string // http://127.0.0.1:PORT, for OTEL_EXPORTER_OTLP_ENDPOINT

	mu       sync.Mutex
	spans    []Span
	requests int
	failures int // requests answered 500, from FailNext
	failNext int
}

// Start runs a receiver until the test ends.
func Start(t testing.TB) *Receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("otlpreceiver: listen: %v", err)
	}
	r := &Receiver{URL: "http://" + ln.Addr().String()}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

// ServeHTTP accepts POST /v1/traces.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodPost && req.URL.Path == "/v1/metrics" {
		// A collector takes metrics too (Portcullis pushes them to the
		// same endpoint); they are not what this receiver keeps.
		_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, req.Body, maxBody))
		w.Header().Set("Content-Type", "application/x-protobuf")
		return
	}
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		http.Error(w, "only POST /v1/traces and /v1/metrics", http.StatusNotFound)
		return
	}
	r.mu.Lock()
	r.requests++
	fail := r.failNext > 0
	if fail {
		r.failNext--
		r.failures++
	}
	r.mu.Unlock()
	if fail {
		http.Error(w, "otlpreceiver: injected failure", http.StatusBadRequest)
		return
	}
	var body io.Reader = http.MaxBytesReader(w, req.Body, maxBody)
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = io.LimitReader(zr, maxBody)
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	spans := decode(&msg)
	r.mu.Lock()
	r.spans = append(r.spans, spans...)
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func decode(msg *coltracepb.ExportTraceServiceRequest) []Span {
	var out []Span
	for _, rs := range msg.GetResourceSpans() {
		service := attrs(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := Span{
					Service: service,
					TraceID: hex.EncodeToString(s.GetTraceId()),
					SpanID:  hex.EncodeToString(s.GetSpanId()),
					Name:    s.GetName(),
					Kind:    s.GetKind(),
					Attrs:   attrs(s.GetAttributes()),
					Start:   time.Unix(0, int64(s.GetStartTimeUnixNano())),
					End:     time.Unix(0, int64(s.GetEndTimeUnixNano())),

					StatusError: s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
				}
				if p := s.GetParentSpanId(); len(p) > 0 {
					sp.ParentSpanID = hex.EncodeToString(p)
				}
				for _, l := range s.GetLinks() {
					sp.Links = append(sp.Links, Link{TraceID: hex.EncodeToString(l.GetTraceId()), SpanID: hex.EncodeToString(l.GetSpanId())})
				}
				out = append(out, sp)
			}
		}
	}
	return out
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = x.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = strconv.FormatInt(x.IntValue, 10)
		case *commonpb.AnyValue_BoolValue:
			m[kv.GetKey()] = strconv.FormatBool(x.BoolValue)
		case *commonpb.AnyValue_DoubleValue:
			m[kv.GetKey()] = strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
		default:
			m[kv.GetKey()] = fmt.Sprint(v)
		}
	}
	return m
}

// Spans returns a copy of what was received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Requests counts the export requests received (failed ones included).
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// FailNext answers the next n export requests 400 (not retried by the
// exporter) without keeping their spans.
func (r *Receiver) FailNext(n int) {
	r.mu.Lock()
	r.failNext = n
	r.mu.Unlock()
}

// WaitFor polls (every 50 ms, at most timeout) until done holds for the
// spans received, and returns them; the test fails if it never does.
func (r *Receiver) WaitFor(t testing.TB, timeout time.Duration, what string, done func([]Span) bool) []Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		spans := r.Spans()
		if done(spans) {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("otlpreceiver: no %s within %s; received %d spans: %s", what, timeout, len(spans), Names(spans))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Names lists span names, for failure messages.
func Names(spans []Span) string {
	s := ""
	for i, sp := range spans {
		if i > 0 {
			s += ", "
		}
		s += sp.Name
	}
	return s
}
