package proxy

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
)

type endpoint int

const (
	endpointBase endpoint = iota
	endpointCatalog
	endpointManifest
	endpointBlob
	endpointUpload
	endpointTags
	endpointReferrers
)

// route is a parsed /v2/ request: which upstream, which repository there,
// and what is asked for.
type route struct {
	endpoint endpoint
	upstream string // configured upstream name
	repo     string // repository on the upstream
	name     string // repository as the client named it (for Link headers)
	ref      string // tag or digest (manifests), digest (blobs, referrers)
	// digest is ref parsed, set by validation when ref is a digest. Routes
	// built by hand (Proxy.Manifest) leave it empty.
	digest digest.Digest
	// query is the request's query, parsed once and strictly: handlers read
	// it (n, last, artifactType) instead of URL.Query, which drops what it
	// cannot parse.
	query url.Values
}

// Grammar from the distribution spec, checked by hand because it runs on
// every request (route_test.go holds the spec's regular expressions and a
// fuzzer that compares them):
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
const (
	componentGrammar = `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
	tagGrammar       = `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
)

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// validComponent matches componentGrammar.
func validComponent(s string) bool {
	i := 0
	for {
		start := i
		for i < len(s) && isLowerAlnum(s[i]) {
			i++
		}
		if i == start {
			return false
		}
		if i == len(s) {
			return true
		}
		switch s[i] {
		case '.':
			i++
		case '_':
			i++
			if i < len(s) && s[i] == '_' {
				i++
			}
		case '-':
			for i < len(s) && s[i] == '-' {
				i++
			}
		default:
			return false
		}
	}
}

// validTag matches tagGrammar.
func validTag(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || (i > 0 && (c == '.' || c == '-'))
		if !ok {
			return false
		}
	}
	return true
}

// maxNameLength follows distribution's limit for a repository name.
const maxNameLength = 255

// router maps request paths and the containerd ?ns= parameter to upstreams.
type router struct {
	upstreams       map[string]bool // configured names, lower case
	names           string          // for error messages
	defaultUpstream string
}

func newRouter(names []string, defaultUpstream string) *router {
	rt := &router{upstreams: map[string]bool{}, defaultUpstream: defaultUpstream}
	for _, n := range names {
		rt.upstreams[strings.ToLower(n)] = true
	}
	rt.names = strings.Join(slices.Sorted(maps.Keys(rt.upstreams)), ", ")
	return rt
}

// parse reads a /v2/ URL. It never contacts anything: an unknown registry is
// refused here, before any upstream client exists for it.
func (rt *router) parse(u *url.URL) (route, *regError) {
	raw := u.EscapedPath()
	if strings.Contains(raw, "%") {
		return route{}, errNameInvalid("encoded characters are not allowed in repository paths")
	}
	rest, ok := strings.CutPrefix(raw, "/v2/")
	if !ok {
		if raw == "/v2" {
			return route{endpoint: endpointBase}, nil
		}
		return route{}, errorf(http.StatusNotFound, "NAME_UNKNOWN", "not a registry API path")
	}
	switch rest {
	case "":
		return route{endpoint: endpointBase}, nil
	case "_catalog":
		return route{endpoint: endpointCatalog}, nil
	}

	segs := strings.Split(rest, "/")
	n := len(segs)
	var r route
	var nameSegs []string
	switch {
	case n >= 3 && segs[n-2] == "manifests":
		r.endpoint, r.ref, nameSegs = endpointManifest, segs[n-1], segs[:n-2]
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		r.endpoint, nameSegs = endpointTags, segs[:n-2]
	case n >= 3 && segs[n-2] == "referrers":
		r.endpoint, r.ref, nameSegs = endpointReferrers, segs[n-1], segs[:n-2]
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		r.endpoint, nameSegs = endpointUpload, segs[:n-2]
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		r.endpoint, nameSegs = endpointUpload, segs[:n-3]
	case n >= 3 && segs[n-2] == "blobs":
		r.endpoint, r.ref, nameSegs = endpointBlob, segs[n-1], segs[:n-2]
	default:
		return route{}, errorf(http.StatusNotFound, "NAME_UNKNOWN", "unknown registry API endpoint %q", raw)
	}
	if r.endpoint == endpointUpload {
		return r, nil // refused by method before anything else looks at it
	}
	r.name = strings.Join(nameSegs, "/")

	query, rerr := parseQuery(u.RawQuery)
	if rerr != nil {
		return route{}, rerr
	}
	r.query = query
	ns := query.Get("ns")
	upstreamName, repoSegs, err := rt.pickUpstream(ns, nameSegs)
	if err != nil {
		return route{}, err
	}
	if upstreamName == "docker.io" && len(repoSegs) == 1 {
		// Docker Hub's official images live under library/; Docker and
		// containerd normalise this themselves, mirror-path clients may not.
		repoSegs = []string{"library", repoSegs[0]}
	}
	r.upstream = upstreamName
	r.repo = strings.Join(repoSegs, "/")
	if err := validateRepo(r.repo); err != nil {
		return route{}, err
	}
	d, err := validateRef(r.endpoint, r.ref)
	if err != nil {
		return route{}, err
	}
	r.digest = d
	return r, nil
}

// parseQuery parses a request's query strictly. url.URL.Query drops what it
// cannot parse, including every parameter past Go's limit of 10,000, and a
// ?ns= dropped that way used to send the request to the default upstream.
// ns selects the upstream, so it must be unambiguous: given at most once.
func parseQuery(raw string) (url.Values, *regError) {
	if raw == "" {
		return nil, nil // read only (Get on nil Values is ""): no map per request
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "UNSUPPORTED", "invalid query string: %v", err)
	}
	if ns := q["ns"]; len(ns) > 1 {
		return nil, errNameInvalid("ns given %d times; name one registry", len(ns))
	}
	return q, nil
}

// pickUpstream applies the routing rules in order: ?ns= (containerd
// mirrors), a leading registry host in the path (explicit prefix), else the
// default upstream (Docker's registry-mirrors).
func (rt *router) pickUpstream(ns string, segs []string) (string, []string, *regError) {
	if ns != "" {
		name := strings.ToLower(ns)
		if !rt.upstreams[name] {
			return "", nil, rt.unknown(ns)
		}
		return name, segs, nil
	}
	if len(segs) == 1 && rt.upstreams[strings.ToLower(segs[0])] {
		return "", nil, errNameInvalid("%q names a registry but no repository in it", segs[0])
	}
	if len(segs) > 1 && looksLikeRegistry(segs[0]) {
		name := strings.ToLower(segs[0])
		if !rt.upstreams[name] {
			return "", nil, rt.unknown(segs[0])
		}
		return name, segs[1:], nil
	}
	if rt.defaultUpstream == "" {
		return "", nil, errNameUnknown("no registry named in the request and no default upstream configured; configured upstreams: %s", rt.names)
	}
	return rt.defaultUpstream, segs, nil
}

func (rt *router) unknown(name string) *regError {
	return errNameUnknown("registry %q is not configured on this mirror; configured upstreams: %s", name, rt.names)
}

// looksLikeRegistry uses Docker's own rule for the first component of a
// reference: it names a registry when it has a dot or a port, or is localhost.
// Docker Hub namespaces can contain neither.
func looksLikeRegistry(s string) bool {
	return strings.ContainsAny(s, ".:") || s == "localhost"
}

func validateRepo(repo string) *regError {
	if repo == "" {
		return errNameInvalid("empty repository name")
	}
	if len(repo) > maxNameLength {
		return errNameInvalid("repository name longer than %d characters", maxNameLength)
	}
	for c := range strings.SplitSeq(repo, "/") { // no slice per request
		if !validComponent(c) {
			return errNameInvalid("invalid repository name %q: component %q must match %s", repo, c, componentGrammar)
		}
	}
	return nil
}

// validateRef checks ref for endpoint e and returns it parsed when it is a
// digest (empty for a tag or an endpoint without a reference).
func validateRef(e endpoint, ref string) (digest.Digest, *regError) {
	switch e {
	case endpointManifest:
		if isDigest(ref) {
			d, err := parseDigest(ref)
			if err != nil {
				return "", errorf(http.StatusBadRequest, "MANIFEST_INVALID", "invalid manifest digest %q: %v", ref, err)
			}
			return d, nil
		}
		if !validTag(ref) {
			return "", errorf(http.StatusBadRequest, "MANIFEST_INVALID", "invalid tag %q: must match %s", ref, tagGrammar)
		}
	case endpointBlob, endpointReferrers:
		d, err := parseDigest(ref)
		if err != nil {
			return "", errorf(http.StatusBadRequest, "DIGEST_INVALID", "invalid digest %q: %v", ref, err)
		}
		return d, nil
	}
	return "", nil
}

// parseDigest accepts the algorithms we can verify: sha256 and sha512.
func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", err
	}
	if a := d.Algorithm(); a != digest.SHA256 && a != digest.SHA512 {
		return "", digest.ErrDigestUnsupported
	}
	return d, nil
}

func isDigest(ref string) bool { return strings.Contains(ref, ":") }
