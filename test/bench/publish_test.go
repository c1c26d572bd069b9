package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis/portcullis/store"
)

// BenchmarkRepublishScaling replaces one image's published referrers (what
// every re-evaluation after a policy or database change does) in a state
// holding few images and in one holding many. The cost must not grow with
// the number of images: ratio-5000/100 near 1.
func BenchmarkRepublishScaling(b *testing.B) {
	ctx := context.Background()
	const perSet = 12 // verdict, SBOM, signatures, attestations, bundles
	set := func(subject, gen int) ([]json.RawMessage, map[string]store.Content) {
		contents := map[string]store.Content{"sha256:empty": {MediaType: "application/vnd.oci.empty.v1+json", Body: []byte("{}")}}
		var descs []json.RawMessage
		for k := range perSet {
			d := fmt.Sprintf("sha256:%d-%d-%d", subject, gen, k)
			contents[d] = store.Content{MediaType: "application/json", Body: make([]byte, 2048)}
			descs = append(descs, json.RawMessage(fmt.Sprintf(`{"digest":%q,"artifactType":"application/json"}`, d)))
		}
		return descs, contents
	}
	open := func(images int) *store.Bolt {
		s, err := store.OpenBolt(filepath.Join(b.TempDir(), "state.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		for i := range images {
			descs, contents := set(i, 0)
			if err := s.PutReferrers(ctx, fmt.Sprintf("sha256:%d", i), descs, contents); err != nil {
				b.Fatal(err)
			}
		}
		return s
	}
	b.StopTimer()
	few, many := open(100), open(5000)
	const rounds = 50
	measure := func(s *store.Bolt, images, gen int) time.Duration {
		start := time.Now()
		for r := range rounds {
			subject := r * images / rounds
			descs, contents := set(subject, gen*rounds+r+1)
			if err := s.PutReferrers(ctx, fmt.Sprintf("sha256:%d", subject), descs, contents); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start) / rounds
	}
	b.StartTimer()
	var fewTotal, manyTotal time.Duration
	gen := 0
	for b.Loop() {
		gen++
		fewTotal += measure(few, 100, gen)
		manyTotal += measure(many, 5000, gen)
	}
	b.ReportMetric(float64(fewTotal.Microseconds())/float64(gen), "us/republish-100")
	b.ReportMetric(float64(manyTotal.Microseconds())/float64(gen), "us/republish-5000")
	b.ReportMetric(float64(manyTotal)/float64(fewTotal), "ratio-5000/100")
}
