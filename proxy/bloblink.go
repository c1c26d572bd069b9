package proxy

import (
	"context"
	"net/http"

	"github.com/portcullis/portcullis/store"
)

// checkBlobLink refuses a blob the repository is not known to hold. With
// auth, who may pull is decided per repository, but the cache is shared by
// digest: without this, anyone allowed one repository could read another's
// cached layers by digest. Known means a manifest of the repository served
// here references the blob, or the upstream confirms it under the
// repository with the mirror's credentials (once: it is then remembered).
func (p *Proxy) checkBlobLink(ctx context.Context, up Upstream, rt route) *regError {
	d := rt.digest.String()
	key := rt.upstream + "/" + rt.repo + "@" + d
	if p.links.has(key) {
		return nil
	}
	_, linked, err := p.state.BlobLink(ctx, rt.upstream, rt.repo, d)
	if err != nil {
		return errInternal("look up "+blobWhat(up, rt), err)
	}
	if linked {
		p.links.add(key)
		return nil
	}
	hctx, cancel := p.detach(ctx)
	defer cancel()
	size, err := up.Client.HeadBlob(hctx, rt.repo, rt.digest)
	if err != nil {
		rerr := fromUpstream("confirm "+blobWhat(up, rt)+" upstream", err, "BLOB_UNKNOWN")
		if rerr.Status == http.StatusNotFound || rerr.Status == http.StatusUnauthorized || rerr.Status == http.StatusForbidden {
			// The repository does not hold it, or the mirror may not
			// read it there: the same answer either way.
			return errorf(http.StatusNotFound, "BLOB_UNKNOWN", "blob %s is not known in %s/%s", d, rt.upstream, rt.repo)
		}
		return rerr
	}
	if err := p.state.LinkBlob(ctx, rt.upstream, rt.repo, store.BlobRef{Digest: d, Size: size}); err != nil {
		p.log.Error("remember blob confirmed upstream", "blob", d, "repo", rt.upstream+"/"+rt.repo, "err", err)
		return nil
	}
	p.links.add(key)
	return nil
}
