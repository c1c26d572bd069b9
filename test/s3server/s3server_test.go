package s3server

import (
	"context"
	"slices"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
)

// The parameters drive the distribution s3 driver against the real server,
// and what the driver writes is what the server's directory holds.
func TestDriverRoundTrip(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	for _, bucket := range []string{s.Bucket, s.NewBucket(t)} {
		drv, err := factory.Create(ctx, "s3", s.ParametersFor(bucket))
		if err != nil {
			t.Fatal(err)
		}
		if err := drv.PutContent(ctx, "/a/b/data", []byte("hello "+bucket)); err != nil {
			t.Fatalf("put to %s: %v", bucket, err)
		}
		got, err := drv.GetContent(ctx, "/a/b/data")
		if err != nil || string(got) != "hello "+bucket {
			t.Fatalf("get from %s: %q, %v", bucket, got, err)
		}
		if keys := s.Objects(t, bucket); !slices.Equal(keys, []string{"a/b/data"}) {
			t.Fatalf("bucket %s holds %v, want [a/b/data]", bucket, keys)
		}
	}
}
