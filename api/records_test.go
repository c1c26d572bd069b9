package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis/portcullis/store"
)

// The scan API shows records as before they were typed: testdata/*.json
// are the answers the code that kept them as raw JSON gave for the records
// in store/testdata/records (written by that code), with this same test.
func TestScanViewOfOldRecords(t *testing.T) {
	records := filepath.Join("..", "store", "testdata", "records")
	read := func(name string, v any) {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join(records, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatal(err)
		}
	}
	const d = "sha256:5c0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
	for _, tc := range []struct{ name, scan, query, golden string }{
		{"done, verdict of the repository asked", "scan_record_v1.json", "?repository=ghcr.io/org/app", "scan_view_v1.json"},
		{"done, nothing found", "scan_record_clean_v1.json", "", "scan_view_clean_v1.json"},
		{"pending", "scan_record_pending_v1.json", "", "scan_view_pending_v1.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var rec store.ScanRecord
			read(tc.scan, &rec)
			rec.Revision = 0 // as new to this store
			if err := st.PutScan(ctx, &rec); err != nil {
				t.Fatal(err)
			}
			if rec.State != store.ScanPending {
				for _, name := range []string{"decision_record_v1.json", "decision_record_plain_v1.json"} {
					var dec store.DecisionRecord
					read(name, &dec)
					dec.Revision = 0
					if err := st.PutDecision(ctx, &dec); err != nil {
						t.Fatal(err)
					}
				}
			}
			h := &Handler{Scans: st, DBVersion: func() string { return "sha256:newer@2026-11-28T08:00:00Z" }}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/scans/"+d+tc.query, nil))
			golden := filepath.Join("testdata", tc.golden)
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), want) {
				t.Fatalf("%d\n%s\nwant:\n%s", w.Code, w.Body, want)
			}
		})
	}
}
