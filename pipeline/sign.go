package pipeline

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
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
	sigs, err := mutate.AppendSignatures(empty.Signatures(), false, ociSig)
	if err != nil {
		return "", "", err
	}
	raw, err := sigs.RawManifest()
	if err != nil {
		return "", "", err
	}
	mt, err := sigs.MediaType()
	if err != nil {
		return "", "", err
	}
	m, err := sigs.Manifest()
	if err != nil {
		return "", "", err
	}
	cfg, err := sigs.RawConfigFile()
	if err != nil {
		return "", "", err
	}
	contents[m.Config.Digest.String()] = store.Content{MediaType: string(m.Config.MediaType), Body: cfg}
	layers, err := sigs.Layers()
	if err != nil {
		return "", "", err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return "", "", err
		}
		rc, err := l.Compressed()
		if err != nil {
			return "", "", err
		}
		body, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return "", "", err
		}
		lmt, _ := l.MediaType()
		contents[d.String()] = store.Content{MediaType: string(lmt), Body: body}
	}
	sigDigest, err := sigs.Digest()
	if err != nil {
		return "", "", err
	}
	contents[sigDigest.String()] = store.Content{MediaType: string(mt), Body: raw}
	hex, ok := strings.CutPrefix(manifestDigest, "sha256:")
	if !ok {
		return "", "", fmt.Errorf("artifact digest %s is not sha256", manifestDigest)
	}
	return "sha256-" + hex + ".sig", sigDigest.String(), nil
}
