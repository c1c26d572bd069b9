package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
)

// RequestIDHeader names the response header that carries a request's id, the
// one its log line and any "internal error" message give, so an operator can
// find the cause of what a user reports.
const RequestIDHeader = "Portcullis-Request-Id"

// ErrInternal matches (errors.Is) a proxy error whose cause is internal:
// storage, state or encoding failures. Its message says only "internal
// error"; the cause is in Error() for logs, never in what a client sees.
var ErrInternal = errors.New("internal error")

// NewRequestID returns 16 random hex digits: unique enough to find one
// request in the logs, and cheap (one getrandom call).
func NewRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b[:])
}

// InternalMessage is what a client sees instead of an internal error.
func InternalMessage(requestID string) string {
	return "internal error, request id " + requestID
}
