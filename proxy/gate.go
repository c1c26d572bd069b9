package proxy

import (
	"context"

	"github.com/opencontainers/go-digest"
)

// Subject is the manifest a client is about to receive.
type Subject struct {
	Upstream   string
	Repository string
	Reference  string // tag or digest as the client asked
	Digest     digest.Digest
	MediaType  string
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
}

// Gate decides, per manifest digest, whether it may be served. It sits on
// the manifest path only; blobs follow their manifest's decision.
type Gate interface {
	Check(ctx context.Context, s Subject) (Decision, error)
}

type allowAll struct{}

func (allowAll) Check(context.Context, Subject) (Decision, error) {
	return Decision{Verdict: Allow}, nil
}

// BlobGate is what a Gate may also implement to refuse blobs that belong to
// blocked images, so nobody bypasses a block by asking for layers directly.
type BlobGate interface {
	AllowBlob(ctx context.Context, d digest.Digest) (allowed bool, message string)
}
