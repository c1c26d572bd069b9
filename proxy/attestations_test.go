package proxy

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

func attManifest(configType string, layers ...string) string {
	var ls []map[string]any
	for _, l := range layers {
		ls = append(ls, map[string]any{"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": l, "size": 10,
			"annotations": map[string]string{"predicateType": "https://example/" + l[len(l)-1:]}})
	}
	b, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": configType, "digest": "sha256:c", "size": 1}, "layers": ls})
	return string(b)
}

func TestComposeAttestations(t *testing.T) {
	const cfg = "application/vnd.oci.image.config.v1+json"
	ours := attManifest(cfg, "sha256:o1", "sha256:o2")
	for _, tc := range []struct {
		name, theirs string
		want         []string // layer digests; nil: not composed
	}{
		{"theirs then ours", attManifest(cfg, "sha256:t1"), []string{"sha256:t1", "sha256:o1", "sha256:o2"}},
		{"empty upstream image", attManifest(cfg), []string{"sha256:o1", "sha256:o2"}},
		{"ours already there", attManifest(cfg, "sha256:t1", "sha256:o1", "sha256:o2"), nil},
		{"one of ours there", attManifest(cfg, "sha256:o2", "sha256:t1"), []string{"sha256:o2", "sha256:t1", "sha256:o1"}},
		{"no config media type", attManifest("", "sha256:t1"), nil},
		{"layers not a list", `{"config":{"mediaType":"x"},"layers":{}}`, nil},
		{"layer without digest", `{"config":{"mediaType":"x"},"layers":[{"mediaType":"y"}]}`, nil},
		{"not JSON", `{"layers": [`, nil},
		{"JSON array", `[]`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, config, configType, ok := composeAttestations([]byte(tc.theirs), []byte(ours))
			if ok != (tc.want != nil) {
				t.Fatalf("ok = %v, want %v", ok, tc.want != nil)
			}
			if !ok {
				return
			}
			got := checkComposed(t, m, config)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("layers %v, want %v", got, tc.want)
			}
			if configType != cfg {
				t.Fatalf("config type %q", configType)
			}
		})
	}
}

// checkComposed checks a composed manifest against its config and returns
// its layer digests.
func checkComposed(t *testing.T, manifest, config []byte) []string {
	t.Helper()
	var m struct {
		Config struct {
			Digest string `json:"digest"`
			Size   int    `json:"size"`
		} `json:"config"`
		Layers []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"layers"`
	}
	var c struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatalf("composed manifest: %v", err)
	}
	if err := json.Unmarshal(config, &c); err != nil {
		t.Fatalf("composed config: %v", err)
	}
	if m.Config.Digest != digest.FromBytes(config).String() || m.Config.Size != len(config) {
		t.Fatalf("config descriptor %+v does not describe the config", m.Config)
	}
	var layers []string
	for _, l := range m.Layers {
		layers = append(layers, l.Digest)
	}
	if !slices.Equal(layers, c.RootFS.DiffIDs) {
		t.Fatalf("diff ids %v, layers %v", c.RootFS.DiffIDs, layers)
	}
	return layers
}

// The upstream's manifest is outside input: composing never panics, and
// whatever it composes is consistent and keeps every layer of both sides.
func FuzzComposeAttestations(f *testing.F) {
	const cfg = "application/vnd.oci.image.config.v1+json"
	f.Add(attManifest(cfg, "sha256:t1"), attManifest(cfg, "sha256:o1"))
	f.Add(attManifest(cfg), attManifest(cfg, "sha256:o1", "sha256:o2"))
	f.Add(`{"config":{"mediaType":"x"},"layers":null}`, attManifest(cfg, "sha256:o1"))
	f.Add(`{"config":{"mediaType":"x"},"layers":[{"digest":"a"},{"digest":"a"}]}`, attManifest(cfg, "sha256:o1"))
	f.Fuzz(func(t *testing.T, theirs, ours string) {
		m, config, _, ok := composeAttestations([]byte(theirs), []byte(ours))
		if !ok {
			return
		}
		got := checkComposed(t, m, config)
		for _, side := range []string{theirs, ours} {
			ls, _ := parseLayers(mustField(side, "layers"))
			for _, l := range ls {
				if !slices.Contains(got, l.Digest) {
					t.Fatalf("layer %s dropped: %v", l.Digest, got)
				}
			}
		}
	})
}

func mustField(doc, field string) json.RawMessage {
	var m map[string]json.RawMessage
	_ = json.Unmarshal([]byte(doc), &m)
	return m[field]
}
