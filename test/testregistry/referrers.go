package testregistry

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
)

// serveReferrers answers the referrers API the way the distribution spec
// says and real registries do: a descriptor's artifactType is the
// manifest's artifactType field, and only without one its config media
// type. ggcr's registry reads the config media type alone, so cosign's
// bundles (empty config, artifactType set) would look like empty configs
// here and nowhere else. ggcr still does the listing; this fixes each
// descriptor and applies the artifactType filter itself.
func (r *Registry) serveReferrers(w http.ResponseWriter, req *http.Request) {
	repo, _, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/v2/"), "/referrers/")
	list := req.Clone(req.Context())
	q := list.URL.Query()
	filter := q.Get("artifactType")
	q.Del("artifactType")
	list.URL.RawQuery = q.Encode()
	rec := httptest.NewRecorder()
	r.reg.ServeHTTP(rec, list)
	var idx struct {
		SchemaVersion int              `json:"schemaVersion"`
		MediaType     string           `json:"mediaType"`
		Manifests     []map[string]any `json:"manifests"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &idx) != nil {
		copyResponse(w, rec)
		return
	}
	kept := idx.Manifests[:0]
	for _, d := range idx.Manifests {
		digest, _ := d["digest"].(string)
		if at := r.manifestArtifactType(req, repo, digest); at != "" {
			d["artifactType"] = at
		}
		if filter == "" || d["artifactType"] == filter {
			kept = append(kept, d)
		}
	}
	idx.Manifests = kept
	body, err := json.Marshal(idx)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// manifestArtifactType reads the artifactType field of repo@digest.
func (r *Registry) manifestArtifactType(req *http.Request, repo, digest string) string {
	get, err := http.NewRequestWithContext(req.Context(), http.MethodGet, "/v2/"+repo+"/manifests/"+digest, nil)
	if err != nil {
		return ""
	}
	rec := httptest.NewRecorder()
	r.reg.ServeHTTP(rec, get)
	var m struct {
		ArtifactType string `json:"artifactType"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &m) != nil {
		return ""
	}
	return m.ArtifactType
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}
