package pipeline

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/empty"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/portcullis/portcullis/store"
)

// signArtifact signs a published artifact manifest the way `cosign sign
// --key` does without a transparency log: a simple-signing payload naming
// repo@manifestDigest, in a signature manifest for the tag
// sha256-<hex>.sig. Its content joins contents; it returns the tag and the
// signature manifest's digest. `cosign verify --key` against the mirror,
// or any admission controller with the proxy's public key, checks it.
func signArtifact(signer signature.Signer, repo, manifestDigest string, contents map[string]store.Content) (string, string, error) {
	ref, err := name.NewDigest(repo + "@" + manifestDigest)
	if err != nil {
		return "", "", err
	}
	pl, err := payload.Cosign{Image: ref}.MarshalJSON()
	if err != nil {
		return "", "", err
	}
	sig, err := signer.SignMessage(bytes.NewReader(pl))
	if err != nil {
		return "", "", err
	}
	ociSig, err := static.NewSignature(pl, base64.StdEncoding.EncodeToString(sig))
	if err != nil {
		return "", "", err
	}
	sigDigest, err := signatureImage(contents, ociSig)
	if err != nil {
		return "", "", err
	}
	tag, err := cosignTag(manifestDigest, ".sig")
	return tag, sigDigest, err
}

// signatureImage builds cosign's signature image (an image whose layers are
// the signatures, annotated) for sigs, adds its manifest, config and layers
// to contents and returns the manifest's digest.
func signatureImage(contents map[string]store.Content, sigs ...oci.Signature) (string, error) {
	img, err := mutate.AppendSignatures(empty.Signatures(), false, sigs...)
	if err != nil {
		return "", err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return "", err
	}
	mt, err := img.MediaType()
	if err != nil {
		return "", err
	}
	m, err := img.Manifest()
	if err != nil {
		return "", err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return "", err
	}
	contents[m.Config.Digest.String()] = store.Content{MediaType: string(m.Config.MediaType), Body: cfg}
	layers, err := img.Layers()
	if err != nil {
		return "", err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return "", err
		}
		rc, err := l.Compressed()
		if err != nil {
			return "", err
		}
		body, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return "", err
		}
		lmt, err := l.MediaType()
		if err != nil {
			return "", err
		}
		contents[d.String()] = store.Content{MediaType: string(lmt), Body: body}
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	contents[d.String()] = store.Content{MediaType: string(mt), Body: raw}
	return d.String(), nil
}

// cosignTag is cosign's tag schema for what belongs to a digest:
// sha256-<hex><suffix> (".sig" signatures, ".att" attestations).
func cosignTag(d, suffix string) (string, error) {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok {
		return "", fmt.Errorf("digest %s is not sha256", d)
	}
	return "sha256-" + hex + suffix, nil
}
