package signing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// registryHost is the name cosign's fetching code is pointed at. ".invalid"
// (RFC 6761) never resolves, and registryTransport refuses any other host, so
// a request that escaped this package's plumbing could not reach a network.
const registryHost = "portcullis-signing.invalid"

// Limits on what one response may hold. Signature manifests, simple-signing
// payloads and bundles are a few KiB; anything near these is hostile.
const (
	maxManifestBytes = 4 << 20
	maxBlobBytes     = 4 << 20
)

// registryTransport is an http.RoundTripper that serves the read side of the
// OCI distribution API from a Registry, so cosign's ociremote (which speaks
// HTTP through go-containerregistry) reads through the proxy's upstream
// client and cache without any socket.
//
// Spec: https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pull
type registryTransport struct {
	reg Registry
}

// remoteOptions are the go-containerregistry options for reading through reg:
// no credentials (the Registry carries its own), no keychain lookups, and no
// retries (the Registry implementation owns the retry policy).
func remoteOptions(ctx context.Context, reg Registry) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(&registryTransport{reg: reg}),
		remote.WithAuth(authn.Anonymous),
		remote.WithRetryPredicate(func(error) bool { return false }),
		remote.WithRetryStatusCodes(),
	}
}

// fetchError marks a failure of the Registry itself (as opposed to bad
// content), so callers can report "error" rather than "invalid".
type fetchError struct{ err error }

func (e *fetchError) Error() string { return e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

func (t *registryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	if req.URL.Host != registryHost {
		return nil, fmt.Errorf("signing: refusing request to %q: only the in-process registry is reachable", req.URL.Host)
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return ociError(req, http.StatusMethodNotAllowed, "UNSUPPORTED", "read-only registry"), nil
	}
	path := req.URL.Path
	if path == "/v2/" || path == "/v2" {
		return respond(req, http.StatusOK, "application/json", "", []byte("{}")), nil
	}
	repo, kind, ref, ok := splitPath(path)
	if !ok {
		return ociError(req, http.StatusNotFound, "NAME_UNKNOWN", "unknown path"), nil
	}
	ctx := req.Context()
	switch kind {
	case "manifests":
		body, mediaType, digest, err := t.reg.Manifest(ctx, repo, ref)
		if err != nil {
			return t.fail(req, "MANIFEST_UNKNOWN", fmt.Errorf("fetch manifest %s:%s: %w", repo, ref, err))
		}
		if len(body) > maxManifestBytes {
			return nil, fmt.Errorf("manifest %s:%s: %d bytes exceeds the %d limit", repo, ref, len(body), maxManifestBytes)
		}
		if digest == "" {
			digest = sha256Digest(body)
		}
		return respond(req, http.StatusOK, mediaType, digest, body), nil
	case "blobs":
		rc, err := t.reg.Blob(ctx, repo, ref)
		if err != nil {
			return t.fail(req, "BLOB_UNKNOWN", fmt.Errorf("fetch blob %s@%s: %w", repo, ref, err))
		}
		resp := respond(req, http.StatusOK, "application/octet-stream", ref, nil)
		resp.ContentLength = -1 // unknown: Registry.Blob does not say
		resp.Header.Del("Content-Length")
		if req.Method == http.MethodHead {
			rc.Close()
			return resp, nil
		}
		resp.Body = &limitedBody{rc: rc, name: ref}
		return resp, nil
	default: // referrers
		idx, err := t.reg.Referrers(ctx, repo, ref, req.URL.Query().Get("artifactType"))
		if err != nil {
			return t.fail(req, "MANIFEST_UNKNOWN", fmt.Errorf("fetch referrers of %s@%s: %w", repo, ref, err))
		}
		return respond(req, http.StatusOK, "application/vnd.oci.image.index.v1+json", "", idx), nil
	}
}

// fail turns a Registry error into what a registry would answer: not found is
// a 404 with an OCI error body (cosign reads a missing .sig tag as "no
// signatures"); anything else is a transport failure carrying the cause.
func (t *registryTransport) fail(req *http.Request, code string, err error) (*http.Response, error) {
	if errors.Is(err, ErrNotFound) {
		return ociError(req, http.StatusNotFound, code, err.Error()), nil
	}
	return nil, &fetchError{err: err}
}

// splitPath splits /v2/<name>/<kind>/<reference>; <name> may contain slashes.
func splitPath(path string) (repo, kind, ref string, ok bool) {
	rest, found := strings.CutPrefix(path, "/v2/")
	if !found {
		return "", "", "", false
	}
	for _, k := range []string{"manifests", "blobs", "referrers"} {
		i := strings.LastIndex(rest, "/"+k+"/")
		if i <= 0 {
			continue
		}
		repo, ref = rest[:i], rest[i+len(k)+2:]
		if ref == "" || strings.Contains(ref, "/") {
			continue
		}
		return repo, k, ref, true
	}
	return "", "", "", false
}

func respond(req *http.Request, status int, mediaType, digest string, body []byte) *http.Response {
	h := http.Header{}
	h.Set("Docker-Distribution-API-Version", "registry/2.0")
	if mediaType != "" {
		h.Set("Content-Type", mediaType)
	}
	if digest != "" {
		h.Set("Docker-Content-Digest", digest)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	resp := &http.Response{
		Status:        strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: int64(len(body)),
		Body:          http.NoBody,
		Request:       req,
	}
	if req.Method != http.MethodHead && len(body) > 0 {
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	return resp
}

// ociError answers with an OCI error body, as the distribution spec describes:
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes
func ociError(req *http.Request, status int, code, msg string) *http.Response {
	body, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
	return respond(req, status, "application/json", "", body)
}

// limitedBody passes a blob through, failing once it exceeds its limit so a
// hostile upstream cannot make cosign buffer an arbitrarily large "payload".
type limitedBody struct {
	rc   io.ReadCloser
	read int64
	name string
}

func (l *limitedBody) Read(p []byte) (int, error) {
	n, err := l.rc.Read(p)
	l.read += int64(n)
	if l.read > maxBlobBytes {
		return n, fmt.Errorf("blob %s exceeds the %d byte limit for signature content", l.name, maxBlobBytes)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = &fetchError{err: fmt.Errorf("read blob %s: %w", l.name, err)}
	}
	return n, err
}

func (l *limitedBody) Close() error { return l.rc.Close() }
