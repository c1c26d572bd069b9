package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Manifest is a manifest as the upstream served it: exact bytes and media type.
type Manifest struct {
	Body      []byte
	MediaType string
	Digest    digest.Digest
}

// Descriptor is what a HEAD tells about a manifest or blob.
type Descriptor struct {
	MediaType string
	Digest    digest.Digest // empty when the upstream did not say
	Size      int64         // -1 when unknown
}

func acceptHeader(accept []string) http.Header {
	h := http.Header{}
	if len(accept) > 0 {
		h.Set("Accept", strings.Join(accept, ", "))
	}
	return h
}

// GetManifest fetches a manifest by tag or digest and verifies it: against
// the digest asked for, else against the Docker-Content-Digest the upstream
// announced.
func (c *Client) GetManifest(ctx context.Context, repo, ref string, accept []string) (*Manifest, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v2/"+repo+"/manifests/"+ref, nil, pullScope(repo), acceptHeader(accept))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read manifest %s:%s from %s: %w", ErrUnreachable, repo, ref, c.name, err)
	}
	if len(body) > MaxManifestSize {
		return nil, fmt.Errorf("manifest %s:%s from %s: %w (limit %d bytes)", repo, ref, c.name, ErrTooLarge, MaxManifestSize)
	}
	want := digest.Digest("")
	if strings.Contains(ref, ":") {
		want = digest.Digest(ref)
	} else if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
		want, err = digest.Parse(h)
		if err != nil {
			return nil, fmt.Errorf("manifest %s:%s from %s: bad Docker-Content-Digest %q: %w", repo, ref, c.name, h, err)
		}
	}
	got := digest.FromBytes(body)
	if want != "" {
		if !want.Algorithm().Available() {
			return nil, fmt.Errorf("manifest %s:%s from %s: unsupported digest algorithm %s", repo, ref, c.name, want.Algorithm())
		}
		got = want.Algorithm().FromBytes(body)
		if got != want {
			return nil, fmt.Errorf("manifest %s:%s from %s: %w: want %s, got %s", repo, ref, c.name, ErrDigestMismatch, want, got)
		}
	}
	mt, err := checkManifest(resp.Header.Get("Content-Type"), body)
	if err != nil {
		return nil, fmt.Errorf("manifest %s:%s from %s: %w", repo, ref, c.name, err)
	}
	return &Manifest{Body: body, MediaType: mt, Digest: got}, nil
}

// HeadManifest asks for a manifest's digest without its body.
func (c *Client) HeadManifest(ctx context.Context, repo, ref string, accept []string) (Descriptor, error) {
	resp, err := c.do(ctx, http.MethodHead, "/v2/"+repo+"/manifests/"+ref, nil, pullScope(repo), acceptHeader(accept))
	if err != nil {
		return Descriptor{}, err
	}
	resp.Body.Close()
	d := Descriptor{MediaType: manifestMediaType(resp.Header.Get("Content-Type"), nil), Size: resp.ContentLength}
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
		if parsed, err := digest.Parse(h); err == nil {
			d.Digest = parsed
		}
	}
	return d, nil
}

// GetBlob opens a blob. The caller verifies the bytes as it streams them,
// and must close the body. size is -1 when the upstream did not say.
func (c *Client) GetBlob(ctx context.Context, repo string, d digest.Digest) (body io.ReadCloser, size int64, err error) {
	// Registries send blobs to a CDN: the one request that may follow a redirect.
	resp, err := c.do(withRedirects(ctx), http.MethodGet, "/v2/"+repo+"/blobs/"+d.String(), nil, pullScope(repo), nil)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, 0, &StatusError{Upstream: c.name, Status: resp.StatusCode, Message: "unexpected status for a blob GET"}
	}
	return resp.Body, resp.ContentLength, nil
}

// HeadBlob returns a blob's size without downloading it.
func (c *Client) HeadBlob(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	// Some registries answer a blob HEAD with the same CDN redirect as a GET.
	resp, err := c.do(withRedirects(ctx), http.MethodHead, "/v2/"+repo+"/blobs/"+d.String(), nil, pullScope(repo), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.ContentLength, nil
}

// Bounds on a tag listing, over all its pages together: a hostile upstream
// could otherwise make one request (or one freshness check) page through
// gigabytes.
const (
	maxTagPages = 1000
	maxTags     = 100_000
	maxTagBytes = 16 << 20 // body bytes of all pages together
)

// Tags lists every tag of a repository, following the upstream's pagination
// on the same origin and repository only.
func (c *Client) Tags(ctx context.Context, repo string) ([]string, error) {
	var all []string
	listPath := "/v2/" + repo + "/tags/list"
	query := url.Values{}
	budget := &budgetReader{left: maxTagBytes}
	for page := 0; page < maxTagPages; page++ {
		resp, err := c.do(ctx, http.MethodGet, listPath, query, pullScope(repo), nil)
		if err != nil {
			return nil, err
		}
		budget.r = resp.Body
		all, err = decodeTags(budget, all, maxTags)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("tags of %s from %s: %w", repo, c.name, err)
		}
		next := nextLink(resp.Header.Get("Link"))
		if next == "" {
			return all, nil
		}
		u, err := c.base.Parse(next)
		if err != nil || origin(u) != origin(c.base) || u.Path != listPath {
			return nil, fmt.Errorf("tags of %s from %s: pagination link %q leaves the repository's tag list", repo, c.name, snippet([]byte(next)))
		}
		query = u.Query()
	}
	return nil, fmt.Errorf("tags of %s from %s: %w: more than %d pages", repo, c.name, ErrTooLarge, maxTagPages)
}

// budgetReader reads from r until left bytes are used up, across however
// many bodies it is given, then fails with ErrTooLarge.
type budgetReader struct {
	r    io.Reader
	left int64
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("%w: more than %d bytes of tag listing", ErrTooLarge, maxTagBytes)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// decodeTags reads one {"name": …, "tags": […]} page and appends its tags to
// all, stopping with ErrTooLarge as soon as there would be more than limit:
// it streams the array, so a page of millions of tags never sits in memory.
func decodeTags(r io.Reader, all []string, limit int) ([]string, error) {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if key != "tags" {
			var skip json.RawMessage // bounded by the byte budget
			if err := dec.Decode(&skip); err != nil {
				return nil, err
			}
			continue
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if tok == nil { // "tags": null, as some registries send for none
			continue
		}
		if tok != json.Delim('[') {
			return nil, fmt.Errorf("tags is %v, not an array", tok)
		}
		for dec.More() {
			if len(all) >= limit {
				return nil, fmt.Errorf("%w: more than %d tags", ErrTooLarge, limit)
			}
			var tag string
			if err := dec.Decode(&tag); err != nil {
				return nil, err
			}
			all = append(all, tag)
		}
		if err := expectDelim(dec, ']'); err != nil {
			return nil, err
		}
	}
	return all, expectDelim(dec, '}')
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("tag list: got %v, want %v", tok, want)
	}
	return nil
}

// nextLink extracts the rel="next" target of an RFC 8288 Link header.
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
		if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
			continue
		}
		target = strings.TrimSpace(target)
		if strings.HasPrefix(target, "<") && strings.HasSuffix(target, ">") {
			return target[1 : len(target)-1]
		}
	}
	return ""
}

// Referrers is an upstream's answer to the referrers API.
type Referrers struct {
	Body     []byte
	Filtered bool // the upstream applied the artifactType filter itself
}

// Referrers calls the OCI 1.1 referrers API. An upstream without the API
// answers 404 (IsNotFound), and the caller falls back to the tag schema.
func (c *Client) Referrers(ctx context.Context, repo string, d digest.Digest, artifactType string) (*Referrers, error) {
	q := url.Values{}
	if artifactType != "" {
		q.Set("artifactType", artifactType)
	}
	h := http.Header{}
	h.Set("Accept", "application/vnd.oci.image.index.v1+json")
	resp, err := c.do(ctx, http.MethodGet, "/v2/"+repo+"/referrers/"+d.String(), q, pullScope(repo), h)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read referrers of %s@%s from %s: %w", ErrUnreachable, repo, d, c.name, err)
	}
	if len(body) > MaxManifestSize {
		return nil, fmt.Errorf("referrers of %s@%s from %s: %w", repo, d, c.name, ErrTooLarge)
	}
	return &Referrers{Body: body, Filtered: strings.Contains(resp.Header.Get("OCI-Filters-Applied"), "artifactType")}, nil
}

// manifestMediaType prefers the Content-Type header and falls back to the
// manifest's own mediaType field for upstreams that send a generic type.
func manifestMediaType(contentType string, body []byte) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err == nil && mt != "" && mt != "application/json" && mt != "text/plain" && mt != "application/octet-stream" {
		return mt
	}
	var m struct {
		MediaType string `json:"mediaType"`
	}
	if len(body) > 0 && json.Unmarshal(body, &m) == nil && m.MediaType != "" {
		return m.MediaType
	}
	if mt != "" {
		return mt
	}
	return contentType
}
