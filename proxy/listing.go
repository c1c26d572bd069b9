package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/store"
)

// serveTags lists tags with n/last pagination done here, over the full
// upstream list, so clients get spec behaviour whatever the upstream does:
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-tags
func (p *Proxy) serveTags(w http.ResponseWriter, r *http.Request, rt route) *regError {
	q := rt.query
	limit := -1
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return errorf(http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", "n=%q must be a non-negative integer", s)
		}
		limit = v
	}
	ctx, cancel := p.detach(r.Context())
	defer cancel()
	up := p.upstreamFor(rt)
	tags, err := up.Client.Tags(ctx, rt.repo)
	if err != nil {
		return fromUpstream("list tags of "+up.Client.Name()+"/"+rt.repo, err, "NAME_UNKNOWN")
	}
	sort.Strings(tags)
	tags = slices.Compact(tags)
	if last := q.Get("last"); last != "" {
		i, found := slices.BinarySearch(tags, last)
		if found {
			i++
		}
		tags = tags[i:]
	}
	if limit >= 0 && len(tags) > limit {
		tags = tags[:limit]
		if limit > 0 {
			next := url.Values{"n": {strconv.Itoa(limit)}, "last": {tags[len(tags)-1]}}
			if ns := q.Get("ns"); ns != "" {
				next.Set("ns", ns)
			}
			w.Header().Set("Link", `</v2/`+rt.name+`/tags/list?`+next.Encode()+`>; rel="next"`)
		}
	}
	if tags == nil {
		tags = []string{}
	}
	return writeJSON(w, r, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{rt.name, tags})
}

const ociIndexType = "application/vnd.oci.image.index.v1+json"

// referrerIndex keeps each descriptor as the upstream wrote it, reading only
// what filtering needs.
type referrerIndex struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Manifests     []json.RawMessage `json:"manifests"`
}

// serveReferrers answers the OCI 1.1 referrers API; for an upstream without
// it, from the referrers tag schema (sha256-<hex>):
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-referrers
func (p *Proxy) serveReferrers(w http.ResponseWriter, r *http.Request, rt route) *regError {
	artifactType := rt.query.Get("artifactType")
	ctx, cancel := p.detach(r.Context())
	defer cancel()
	idx, rerr := p.referrers(ctx, p.upstreamFor(rt), rt.repo, rt.digest, artifactType, true)
	if rerr != nil {
		return rerr
	}
	if artifactType != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	return writeJSON(w, r, ociIndexType, idx)
}

// referrers lists the referrers of d, filtered by artifactType, with what
// Portcullis published about d if withOwn.
func (p *Proxy) referrers(ctx context.Context, up Upstream, repo string, d digest.Digest, artifactType string, withOwn bool) (referrerIndex, *regError) {
	what := "referrers of " + up.Client.Name() + "/" + repo + "@" + d.String()
	var body []byte
	filtered := false
	ref, err := up.Client.Referrers(ctx, repo, d, artifactType)
	switch {
	case err == nil:
		body, filtered = ref.Body, ref.Filtered
	case upstream.IsNotFound(err):
		tag := string(d.Algorithm()) + "-" + d.Encoded()
		m, terr := up.Client.GetManifest(ctx, repo, tag, []string{ociIndexType})
		switch {
		case terr == nil:
			body = m.Body
		case !upstream.IsNotFound(terr):
			return referrerIndex{}, fromUpstream(what+" (tag schema)", terr, "MANIFEST_UNKNOWN")
		}
	default:
		return referrerIndex{}, fromUpstream(what, err, "MANIFEST_UNKNOWN")
	}

	var idx referrerIndex
	if len(body) > 0 {
		if err := json.Unmarshal(body, &idx); err != nil {
			return referrerIndex{}, errorf(http.StatusBadGateway, "UNAVAILABLE", "%s: upstream sent an invalid index: %v", what, err)
		}
	}
	if p.local != nil && withOwn {
		// What Portcullis published about d (verdict, SBOM) joins the list.
		own, err := p.local.Referrers(ctx, store.SubjectKey(up.Client.Name(), repo, d.String()))
		if err != nil {
			return referrerIndex{}, errInternal(what, err)
		}
		// cosign reads one format per image: sigstore bundles if any
		// referrer is one, else the legacy .sig/.att tags. Our bundles
		// follow the upstream's choice, so they never hide its signatures.
		if !slices.ContainsFunc(idx.Manifests, isSigstoreBundle) {
			own = slices.DeleteFunc(slices.Clone(own), isSigstoreBundle)
		}
		idx.Manifests = append(idx.Manifests, own...)
		filtered = filtered && len(own) == 0
	}
	if artifactType != "" && !filtered {
		kept := idx.Manifests[:0]
		for _, raw := range idx.Manifests {
			if artifactTypeOf(raw) == artifactType {
				kept = append(kept, raw)
			}
		}
		idx.Manifests = kept
	}
	if idx.Manifests == nil {
		idx.Manifests = []json.RawMessage{}
	}
	idx.SchemaVersion, idx.MediaType = 2, ociIndexType
	return idx, nil
}

// isSigstoreBundle reports whether a referrer descriptor holds a sigstore
// bundle (application/vnd.dev.sigstore.bundle.v0.3+json and its
// predecessors).
func isSigstoreBundle(desc json.RawMessage) bool {
	return strings.HasPrefix(artifactTypeOf(desc), "application/vnd.dev.sigstore.bundle")
}

// artifactTypeOf reads a descriptor's artifactType; empty when it has none
// or is not a JSON object.
func artifactTypeOf(raw json.RawMessage) string {
	var desc struct {
		ArtifactType string `json:"artifactType"`
	}
	if json.Unmarshal(raw, &desc) != nil {
		return ""
	}
	return desc.ArtifactType
}

func writeJSON(w http.ResponseWriter, r *http.Request, contentType string, v any) *regError {
	body, err := json.Marshal(v)
	if err != nil {
		return errInternal("encode response", err)
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return nil
}
