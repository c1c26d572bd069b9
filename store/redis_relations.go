package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// linkBlobLua records one blob of an image in a repository. KEYS: the
// blob's image set and its link (one hash tag). ARGV: the image ("": none,
// the upstream confirmed the blob), the declared size ("": not known; a
// known size is kept over an unknown one).
const linkBlobLua = `
if ARGV[1] ~= '' then redis.call('SADD', KEYS[1], ARGV[1]) end
if ARGV[2] == '' then
  redis.call('SET', KEYS[2], '', 'NX')
else
  redis.call('SET', KEYS[2], ARGV[2])
end
return 1
`

func sizeArg(size int64) string {
	if size < 0 {
		return ""
	}
	return strconv.FormatInt(size, 10)
}

// LinkImage implements RelationStore: one script per blob (its keys share
// a hash tag), all in one round trip. Each link is idempotent, so a link
// that failed half-way is completed by the next one.
func (r *Redis) LinkImage(ctx context.Context, upstream, repo, image string, blobs []BlobRef) error {
	where := upstream + "/" + repo
	pipe := r.c.Pipeline()
	for _, b := range blobs {
		r.linkBlob.Eval(ctx, pipe, []string{r.keys.blobImages(where, b.Digest), r.keys.blobLink(where, b.Digest)}, image, sizeArg(b.Size))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("link blobs of %s@%s: %w", where, image, err)
	}
	return nil
}

// LinkBlob implements RelationStore.
func (r *Redis) LinkBlob(ctx context.Context, upstream, repo string, blob BlobRef) error {
	where := upstream + "/" + repo
	err := r.linkBlob.Run(ctx, r.c, []string{r.keys.blobImages(where, blob.Digest), r.keys.blobLink(where, blob.Digest)}, "", sizeArg(blob.Size)).Err()
	if err != nil {
		return fmt.Errorf("link blob %s to %s: %w", blob.Digest, where, err)
	}
	return nil
}

// BlobLink implements RelationStore.
func (r *Redis) BlobLink(ctx context.Context, upstream, repo, blob string) (int64, bool, error) {
	where := upstream + "/" + repo
	v, err := r.c.Get(ctx, r.keys.blobLink(where, blob)).Result()
	if errors.Is(err, redis.Nil) {
		return -1, false, nil
	}
	if err != nil {
		return -1, false, fmt.Errorf("look up blob %s in %s: %w", blob, where, err)
	}
	if v == "" {
		return -1, true, nil
	}
	size, err := strconv.ParseInt(v, 10, 64)
	if err != nil || size < 0 {
		return -1, false, fmt.Errorf("look up blob %s in %s: stored size %q is not valid", blob, where, v)
	}
	return size, true, nil
}

// blobImagesLua reads one batch of a blob's image set and the verdicts of
// those images, so the blob gate's usual case (a set of a few images) is
// one round trip. KEYS: the blob's image set and the repository's verdicts
// hash (one hash tag). ARGV: the SSCAN cursor, the batch size. It returns
// {next cursor, images, verdicts}, a missing verdict as "" (a Lua false
// would reach a RESP3 client as a boolean). The verdicts are read in
// slices: SSCAN may return more than the batch size (a small set is
// returned whole), and unpack has a limit.
const blobImagesLua = `
local scan = redis.call('SSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local images = scan[2]
local verdicts = {}
for i = 1, #images, 500 do
  local got = redis.call('HMGET', KEYS[2], unpack(images, i, math.min(i + 499, #images)))
  for j = 1, #got do verdicts[i + j - 1] = got[j] or '' end
end
return {scan[1], images, verdicts}
`

// BlobImages implements RelationStore: the image set is read a batch at a
// time, each batch with its verdicts in one script (one round trip), so a
// layer shared by many images never loads the whole set. An image may be
// visited twice if the set is resized meanwhile (SSCAN's guarantee).
func (r *Redis) BlobImages(ctx context.Context, upstream, repo, blob string, fn func(image, verdict string) bool) error {
	where := upstream + "/" + repo
	keys := []string{r.keys.blobImages(where, blob), r.keys.verdicts(where)}
	cursor := "0"
	batch := strconv.Itoa(redisBatch)
	for {
		res, err := r.blobImages.Run(ctx, r.c, keys, cursor, batch).Result()
		if err != nil {
			return fmt.Errorf("images with blob %s in %s: %w", blob, where, err)
		}
		next, images, verdicts, err := blobImagesResult(res)
		if err != nil {
			return fmt.Errorf("images with blob %s in %s: %w", blob, where, err)
		}
		for i, image := range images {
			if !fn(image, verdicts[i]) {
				return nil
			}
		}
		if next == "0" {
			return nil
		}
		cursor = next
	}
}

// blobImagesResult reads blobImagesLua's answer.
func blobImagesResult(res any) (next string, images, verdicts []string, err error) {
	parts, ok := res.([]any)
	if !ok || len(parts) != 3 {
		return "", nil, nil, fmt.Errorf("unexpected script answer %v", res)
	}
	next, ok = parts[0].(string)
	rawImages, ok2 := parts[1].([]any)
	rawVerdicts, ok3 := parts[2].([]any)
	if !ok || !ok2 || !ok3 || len(rawImages) != len(rawVerdicts) {
		return "", nil, nil, fmt.Errorf("unexpected script answer %v", res)
	}
	images = make([]string, len(rawImages))
	verdicts = make([]string, len(rawImages))
	for i := range rawImages {
		if images[i], ok = rawImages[i].(string); !ok {
			return "", nil, nil, fmt.Errorf("unexpected image %v in script answer", rawImages[i])
		}
		if verdicts[i], ok = rawVerdicts[i].(string); !ok {
			return "", nil, nil, fmt.Errorf("unexpected verdict %v in script answer", rawVerdicts[i])
		}
	}
	return next, images, verdicts, nil
}

// LinkIndex implements RelationStore.
func (r *Redis) LinkIndex(ctx context.Context, upstream, repo, index string, children []string) error {
	where := upstream + "/" + repo
	pipe := r.c.Pipeline()
	for _, child := range children {
		pipe.SAdd(ctx, r.keys.parents(where, child), index)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("link children of %s@%s: %w", where, index, err)
	}
	return nil
}

// Parents implements RelationStore, a batch at a time like BlobImages.
func (r *Redis) Parents(ctx context.Context, upstream, repo, child string, fn func(index string) bool) error {
	where := upstream + "/" + repo
	err := r.sscan(ctx, r.keys.parents(where, child), func(indexes []string) (bool, error) {
		for _, index := range indexes {
			if !fn(index) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("indexes listing %s in %s: %w", child, where, err)
	}
	return nil
}

// sscan calls batch with the members of the set at key, a batch at a
// time, until it returns false.
func (r *Redis) sscan(ctx context.Context, key string, batch func([]string) (bool, error)) error {
	return r.sscanFrom(ctx, key, 0, batch)
}

// sscanFrom is sscan from an SSCAN cursor another call returned.
func (r *Redis) sscanFrom(ctx context.Context, key string, cursor uint64, batch func([]string) (bool, error)) error {
	for {
		members, next, err := r.c.SScan(ctx, key, cursor, "", redisBatch).Result()
		if err != nil {
			return err
		}
		if len(members) > 0 {
			if more, err := batch(members); err != nil || !more {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}
