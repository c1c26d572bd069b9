package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
)

// ErrInvalidManifest means an upstream answered a manifest request with
// something that is not a manifest of a type this mirror serves.
var ErrInvalidManifest = errors.New("invalid manifest")

// Manifest media types the mirror accepts from upstreams. Docker schema 1
// (application/vnd.docker.distribution.manifest.v1+prettyjws) is refused:
// registries have not served it to clients that accept schema 2 for years,
// and nothing downstream of us can verify or scan it.
const (
	mediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// IsManifestMediaType reports whether mt is a manifest type the mirror
// accepts from an upstream and serves.
func IsManifestMediaType(mt string) bool {
	switch mt {
	case mediaTypeOCIManifest, mediaTypeOCIIndex, mediaTypeDockerManifest, mediaTypeDockerList:
		return true
	}
	return false
}

func isIndexType(mt string) bool { return mt == mediaTypeOCIIndex || mt == mediaTypeDockerList }

// genericContentType is a Content-Type that says nothing about the manifest:
// some registries (and static file servers fronting them) send these, and
// the manifest's own mediaType field decides.
func genericContentType(mt string) bool {
	switch mt {
	case "", "application/json", "text/plain", "application/octet-stream":
		return true
	}
	return false
}

// checkManifest decides the media type of a manifest body an upstream sent
// with contentType, and refuses anything that is not a manifest of a type
// we serve: another Content-Type (an HTML error page, a metadata service's
// answer), a body that is not JSON, schemaVersion other than 2, a mediaType
// field that contradicts the Content-Type, or a body missing what its kind
// requires (an index's manifests, an image manifest's config). Artifacts
// (artifactType, custom config media types) are image manifests and pass.
func checkManifest(contentType string, body []byte) (string, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil && contentType != "" {
		return "", fmt.Errorf("%w: Content-Type %q: %v", ErrInvalidManifest, snippet([]byte(contentType)), err)
	}
	var m struct {
		SchemaVersion *int            `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Config        json.RawMessage `json:"config"`
		Layers        json.RawMessage `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return "", fmt.Errorf("%w: body is not a JSON manifest: %v", ErrInvalidManifest, err)
	}
	switch {
	case IsManifestMediaType(mt):
		if m.MediaType != "" && m.MediaType != mt {
			return "", fmt.Errorf("%w: Content-Type %s but mediaType field %q", ErrInvalidManifest, mt, snippet([]byte(m.MediaType)))
		}
	case genericContentType(mt) && IsManifestMediaType(m.MediaType):
		mt = m.MediaType
	case genericContentType(mt):
		return "", fmt.Errorf("%w: Content-Type %q and mediaType field %q name no manifest type", ErrInvalidManifest, mt, snippet([]byte(m.MediaType)))
	default:
		return "", fmt.Errorf("%w: Content-Type %q is not a manifest type", ErrInvalidManifest, snippet([]byte(mt)))
	}
	if m.SchemaVersion == nil || *m.SchemaVersion != 2 {
		return "", fmt.Errorf("%w: %s without schemaVersion 2", ErrInvalidManifest, mt)
	}
	if isIndexType(mt) {
		if !jsonKind(m.Manifests, '[') {
			return "", fmt.Errorf("%w: %s without a manifests array", ErrInvalidManifest, mt)
		}
		return mt, nil
	}
	if !jsonKind(m.Config, '{') {
		return "", fmt.Errorf("%w: %s without a config object", ErrInvalidManifest, mt)
	}
	if len(m.Layers) > 0 && !jsonKind(m.Layers, '[') && !bytes.Equal(m.Layers, []byte("null")) {
		return "", fmt.Errorf("%w: %s whose layers is not an array", ErrInvalidManifest, mt)
	}
	return mt, nil
}

// jsonKind reports whether raw JSON is an array ('[') or object ('{').
func jsonKind(raw json.RawMessage, open byte) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == open
}
