package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy"
)

// remoteRegistry reads one registry directly (no Portcullis), for commands
// that judge an image without a server. It implements the pipeline's Images
// and Registry; the upstream argument is the registry host.
type remoteRegistry struct{}

func (r remoteRegistry) opts(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx)}
}

func (r remoteRegistry) repo(upstream, repo string) (name.Repository, error) {
	return name.NewRepository(upstream + "/" + repo)
}

// notFound maps a registry 404 to the error the pipeline understands.
func notFound(err error) error {
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return errors.Join(err, proxy.ErrNotFound)
	}
	return err
}

func (r remoteRegistry) Image(ctx context.Context, upstream, repo string, d digest.Digest) (v1.Image, error) {
	rp, err := r.repo(upstream, repo)
	if err != nil {
		return nil, err
	}
	return remote.Image(rp.Digest(d.String()), r.opts(ctx)...)
}

func (r remoteRegistry) IndexChildren(ctx context.Context, upstream, repo string, d digest.Digest) ([]v1.Descriptor, error) {
	rp, err := r.repo(upstream, repo)
	if err != nil {
		return nil, err
	}
	idx, err := remote.Index(rp.Digest(d.String()), r.opts(ctx)...)
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	return m.Manifests, nil
}

func (r remoteRegistry) Tags(ctx context.Context, upstream, repo string) ([]string, error) {
	rp, err := r.repo(upstream, repo)
	if err != nil {
		return nil, err
	}
	return remote.List(rp, r.opts(ctx)...)
}

func (r remoteRegistry) Manifest(ctx context.Context, upstream, repo, reference string) ([]byte, string, digest.Digest, error) {
	ref, err := name.ParseReference(upstream + "/" + repo + sep(reference) + reference)
	if err != nil {
		return nil, "", "", err
	}
	desc, err := remote.Get(ref, r.opts(ctx)...)
	if err != nil {
		return nil, "", "", notFound(err)
	}
	return desc.Manifest, string(desc.MediaType), digest.Digest(desc.Digest.String()), nil
}

func sep(reference string) string {
	if digest.Digest(reference).Validate() == nil {
		return "@"
	}
	return ":"
}

func (r remoteRegistry) Blob(ctx context.Context, upstream, repo string, d digest.Digest) (io.ReadCloser, error) {
	rp, err := r.repo(upstream, repo)
	if err != nil {
		return nil, err
	}
	l, err := remote.Layer(rp.Digest(d.String()), r.opts(ctx)...)
	if err != nil {
		return nil, notFound(err)
	}
	rc, err := l.Compressed()
	return rc, notFound(err)
}

func (r remoteRegistry) Referrers(ctx context.Context, upstream, repo string, d digest.Digest, artifactType string) ([]byte, error) {
	rp, err := r.repo(upstream, repo)
	if err != nil {
		return nil, err
	}
	var opts []remote.Option
	if artifactType != "" {
		opts = append(opts, remote.WithFilter("artifactType", artifactType))
	}
	idx, err := remote.Referrers(rp.Digest(d.String()), append(r.opts(ctx), opts...)...)
	if err != nil {
		return nil, notFound(fmt.Errorf("referrers: %w", err))
	}
	return idx.RawManifest()
}
