package fleet

import (
	"context"
	"testing"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/store"
)

// The counts Fill reports are what the store holds, as the overview
// reads it.
func TestFillCounts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, err := FillDir(ctx, dir, 300, 1)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenBolt(dir + "/state.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ov, err := (&api.Handler{Scans: st}).Overview(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for v, n := range c.Verdicts {
		if ov.Verdicts[v] != n {
			t.Errorf("%s: overview %d, filled %d", v, ov.Verdicts[v], n)
		}
		sum += n
	}
	if c.Images != 300 || sum < 300 || sum > 900 || c.Verdicts["block"] == 0 || c.Verdicts["pending"] == 0 {
		t.Errorf("counts %+v", c)
	}
	most := 0
	for _, n := range c.VulnImages {
		most = max(most, n)
	}
	if top := ov.TopVulnerabilities[0]; c.VulnImages[top.ID] != top.Images || top.Images != most {
		t.Errorf("top %+v, filled %d; the most affected has %d", top, c.VulnImages[top.ID], most)
	}
}
