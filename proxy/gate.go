package proxy

import (
	"context"
	"net/http"

	"github.com/opencontainers/go-digest"
)

// Subject is the manifest a client is about to receive.
type Subject struct {
	Upstream   string
	Repository string
	Reference  string // tag or digest as the client asked
	Digest     digest.Digest
	MediaType  string
	// Manifest is the body about to be served; nil where the caller has
	// none (the gate then reads it through the cache).
	Manifest []byte
}

// Verdict is what the gate decided.
type Verdict int

// Verdicts, from least to most restrictive.
const (
	Allow Verdict = iota
	Warn
	Block
)

// Decision is the gate's answer for one manifest digest.
type Decision struct {
	Verdict Verdict
	Message string // for Warn and Block: what a person should read
	// Details is the path, on this server, of the record behind the
	// decision (e.g. /api/v1/scans/<digest>); the proxy links it.
	Details string
	// Reason is the code of the first reason of a Block (a policy reason
	// code such as VULNERABLE), for metrics; may be empty.
	Reason string
}

// Gate decides, per manifest digest, whether it may be served. It sits on
// the manifest path only; blobs follow their manifest's decision.
type Gate interface {
	Check(ctx context.Context, s Subject) (Decision, error)
}

// withDetails is a decision's message with a link to its details: the one
// line a client prints must lead a person to the whole record.
func (p *Proxy) withDetails(r *http.Request, dec Decision) string {
	if dec.Details == "" {
		return dec.Message
	}
	return dec.Message + "; details: " + p.link(r, dec.Details)
}

// link makes path absolute: under public_url when configured, else at the
// address and scheme the client used.
func (p *Proxy) link(r *http.Request, path string) string {
	if p.publicURL != "" {
		return p.publicURL + path
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + path
}

type allowAll struct{}

func (allowAll) Check(context.Context, Subject) (Decision, error) {
	return Decision{Verdict: Allow}, nil
}

// BlobGate is what a Gate may also implement to refuse blobs that belong to
// blocked images, so nobody bypasses a block by asking for layers directly.
// It decides per repository, as the manifest gate does, and answers Allow
// or Block; an error means it could not tell (the blob is not served).
type BlobGate interface {
	CheckBlob(ctx context.Context, upstream, repo string, d digest.Digest) (Decision, error)
}
