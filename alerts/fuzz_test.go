package alerts

import (
	"net/http"
	"testing"
	"time"
)

// Retry-After comes from the receiver: any value gives a non-negative
// wait or false, never a panic.
func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, s := range []string{"0", "120", "-1", "1e9", "99999999999999999999", now.Format(http.TimeFormat),
		"Thursday, 03-Dec-26 10:01:00 GMT", "Thu Dec  3 10:01:00 2026", " 7 ", "", "\x00", "٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := ParseRetryAfter(v, now)
		if d < 0 || (!ok && d != 0) {
			t.Fatalf("ParseRetryAfter(%q) = %v, %v", v, d, ok)
		}
		if ok && d > maxRetryAfterSeconds*time.Second && len(v) > 0 && v[0] >= '0' && v[0] <= '9' {
			t.Fatalf("seconds %q not bounded: %v", v, d)
		}
	})
}
