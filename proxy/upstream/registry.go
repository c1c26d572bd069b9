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
		return nil, fmt.Errorf("%w: read manifest %s:%s from %s: %v", ErrUnreachable, repo, ref, c.name, err)
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
	return &Manifest{Body: body, MediaType: manifestMediaType(resp.Header.Get("Content-Type"), body), Digest: got}, nil
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
	resp, err := c.do(ctx, http.MethodGet, "/v2/"+repo+"/blobs/"+d.String(), nil, pullScope(repo), nil)
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
	resp, err := c.do(ctx, http.MethodHead, "/v2/"+repo+"/blobs/"+d.String(), nil, pullScope(repo), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.ContentLength, nil
}

// maxTagPages bounds how many Link-paginated pages we follow.
const maxTagPages = 1000

// Tags lists every tag of a repository, following the upstream's pagination.
func (c *Client) Tags(ctx context.Context, repo string) ([]string, error) {
	var all []string
	path, query := "/v2/"+repo+"/tags/list", url.Values{}
	for page := 0; page < maxTagPages; page++ {
		resp, err := c.do(ctx, http.MethodGet, path, query, pullScope(repo), nil)
		if err != nil {
			return nil, err
		}
		var body struct {
			Tags []string `json:"tags"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("tags of %s from %s: %w", repo, c.name, err)
		}
		all = append(all, body.Tags...)
		next := nextLink(resp.Header.Get("Link"))
		if next == "" {
			return all, nil
		}
		u, err := c.base.Parse(next)
		if err != nil || u.Host != c.base.Host {
			return nil, fmt.Errorf("tags of %s from %s: pagination link %q leaves the registry", repo, c.name, next)
		}
		path, query = u.Path, u.Query()
	}
	return nil, fmt.Errorf("tags of %s from %s: more than %d pages", repo, c.name, maxTagPages)
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
		return nil, fmt.Errorf("%w: read referrers of %s@%s from %s: %v", ErrUnreachable, repo, d, c.name, err)
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
