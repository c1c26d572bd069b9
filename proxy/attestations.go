package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/store"
)

// mergeAttestations serves cosign's attestation tag of an image when both
// Portcullis and the upstream attest it: one image whose layers are the
// upstream's attestations followed by ours, so `cosign verify-attestation`
// through the mirror checks either with the right key, and neither hides
// the other. The composed manifest and its config are kept with the
// image's published set, so fetching them by digest works on any replica.
// Without an upstream answer ours alone are served: they are still true.
func (p *Proxy) mergeAttestations(ctx context.Context, rt route, ours, theirs manifestResult, rerr *regError) (manifestResult, *regError) {
	if rerr != nil {
		if rerr.Status != http.StatusNotFound {
			p.log.Warn("upstream attestations unavailable; serving Portcullis' own", "repo", rt.upstream+"/"+rt.repo, "tag", rt.ref, "err", rerr)
		}
		return ours, nil
	}
	if !isImageManifest(theirs.mediaType) {
		p.log.Warn("upstream attestation tag is not an image manifest; not merging", "repo", rt.upstream+"/"+rt.repo, "tag", rt.ref, "mediaType", theirs.mediaType)
		return theirs, nil
	}
	body, config, configType, ok := composeAttestations(theirs.body, ours.body)
	if !ok {
		// Nothing to add, or not an attestation image cosign could read:
		// keep the upstream's answer.
		return theirs, nil
	}
	d := digest.FromBytes(body)
	subject := "sha256:" + strings.TrimSuffix(strings.TrimPrefix(rt.ref, "sha256-"), ".att")
	err := p.local.AddContents(ctx, store.SubjectKey(rt.upstream, rt.repo, subject), map[string]store.Content{
		digest.FromBytes(config).String(): {MediaType: configType, Body: config},
		d.String():                        {MediaType: theirs.mediaType, Body: body},
	})
	if err != nil {
		return manifestResult{}, errInternal(fmt.Sprintf("keep attestations of %s", subject), err)
	}
	return manifestResult{body: body, mediaType: theirs.mediaType, digest: d, cache: cacheLocal}, nil
}

// composeAttestations appends our attestation layers to theirs (an image
// manifest from the upstream: outside input) and writes the config that
// lists them all. ok is false when theirs is not an image manifest with a
// config and well-formed layers, or already holds all of ours.
func composeAttestations(theirs, ours []byte) (manifest, config []byte, configType string, ok bool) {
	var their, our map[string]json.RawMessage
	if json.Unmarshal(theirs, &their) != nil || json.Unmarshal(ours, &our) != nil {
		return nil, nil, "", false
	}
	theirLayers, okTheirs := parseLayers(their["layers"])
	ourLayers, okOurs := parseLayers(our["layers"])
	var theirConfig descriptorRef
	if !okTheirs || !okOurs || json.Unmarshal(their["config"], &theirConfig) != nil || theirConfig.MediaType == "" {
		return nil, nil, "", false
	}
	layers := []json.RawMessage{}
	diffIDs := []string{}
	for _, l := range append(theirLayers, ourLayers...) {
		if slices.Contains(diffIDs, l.Digest) {
			continue // already there
		}
		layers = append(layers, l.raw)
		diffIDs = append(diffIDs, l.Digest)
	}
	if len(layers) == len(theirLayers) {
		return nil, nil, "", false
	}
	// Attestation layers are uncompressed DSSE envelopes: each one's diff
	// id is its digest.
	config, err := json.Marshal(map[string]any{"architecture": "", "os": "", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	if err != nil {
		return nil, nil, "", false
	}
	if their["config"], err = json.Marshal(descriptorRef{MediaType: theirConfig.MediaType, Digest: digest.FromBytes(config).String(), Size: int64(len(config))}); err != nil {
		return nil, nil, "", false
	}
	if their["layers"], err = json.Marshal(layers); err != nil {
		return nil, nil, "", false
	}
	if manifest, err = json.Marshal(their); err != nil {
		return nil, nil, "", false
	}
	return manifest, config, theirConfig.MediaType, true
}

// descriptorRef is the part of an OCI descriptor merging needs.
type descriptorRef struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// layerRef is a layer descriptor kept verbatim (annotations carry the
// attestation's metadata), with its digest.
type layerRef struct {
	descriptorRef
	raw json.RawMessage
}

func parseLayers(raw json.RawMessage) ([]layerRef, bool) {
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return nil, false
	}
	out := make([]layerRef, len(list))
	for i, r := range list {
		if json.Unmarshal(r, &out[i].descriptorRef) != nil || out[i].Digest == "" {
			return nil, false
		}
		out[i].raw = r
	}
	return out, true
}

func isImageManifest(mt string) bool {
	return mt == "application/vnd.oci.image.manifest.v1+json" || mt == "application/vnd.docker.distribution.manifest.v2+json"
}
