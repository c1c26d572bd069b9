package policy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The policy file speaks in days and GiB, which time.ParseDuration and
// strconv do not; these helpers keep that vocabulary small and exact.

const day = 24 * time.Hour

type durationUnit struct {
	name string
	d    time.Duration
}

// durationUnits in the order formatDuration prefers them.
func durationUnits() [5]durationUnit {
	return [...]durationUnit{{"w", 7 * day}, {"d", day}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}}
}

// parseDuration reads "365d", "7d", "30s", "1h30m", "2w" or "0". Units are
// whole numbers of s, m (minutes), h, d (24h) and w (7d); months and years
// are refused because their length is ambiguous.
func parseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	bad := func() (time.Duration, error) {
		return 0, fmt.Errorf("invalid duration %q: want a whole number with a unit s, m, h, d (24h) or w (7d), e.g. 30s or 365d", s)
	}
	if s == "" {
		return bad()
	}
	var total time.Duration
	for rest := s; rest != ""; {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) {
			return bad()
		}
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil {
			return bad()
		}
		var unit time.Duration
		for _, u := range durationUnits() {
			if rest[i:i+1] == u.name {
				unit = u.d
			}
		}
		if unit == 0 {
			return bad()
		}
		if n > int64(math.MaxInt64/unit) || total > math.MaxInt64-time.Duration(n)*unit {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		total += time.Duration(n) * unit
		rest = rest[i+1:]
	}
	return total, nil
}

// formatDuration writes d in the file's vocabulary ("365d", "1h30m"), so
// messages quote limits the way the policy author wrote them.
func formatDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range durationUnits() {
		if u.name == "w" && d%(7*day) != 0 {
			continue // "10d" reads better than "1w3d"
		}
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.d
		}
	}
	if d > 0 { // sub-second remainders only come from hand-built rules
		fmt.Fprintf(&b, "%dns", d)
	}
	return b.String()
}

// sizeUnit knows decimal (kB, MB, …) and binary (KiB, MiB, …, or
// Kubernetes' Ki, Mi, …) units, case-insensitively.
func sizeUnit(u string) (float64, bool) {
	switch strings.ToLower(u) {
	case "", "b":
		return 1, true
	case "kb":
		return 1e3, true
	case "mb":
		return 1e6, true
	case "gb":
		return 1e9, true
	case "tb":
		return 1e12, true
	case "kib", "ki":
		return 1 << 10, true
	case "mib", "mi":
		return 1 << 20, true
	case "gib", "gi":
		return 1 << 30, true
	case "tib", "ti":
		return 1 << 40, true
	}
	return 0, false
}

// parseSize reads "2GiB", "500MB", "1.5GiB", "1048576".
func parseSize(s string) (int64, error) {
	bad := fmt.Errorf("invalid size %q: want a number with an optional unit B, kB, MB, GB, TB, KiB, MiB, GiB or TiB, e.g. 2GiB", s)
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	if i == 0 {
		return 0, bad
	}
	n, err := strconv.ParseFloat(t[:i], 64)
	if err != nil {
		return 0, bad
	}
	mult, ok := sizeUnit(strings.TrimSpace(t[i:]))
	if !ok {
		return 0, bad
	}
	v := math.Round(n * mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}

// formatSize writes bytes in binary units with one decimal where it helps:
// "2 GiB", "2.4 GiB", "512 B".
func formatSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(n)
	u := 0
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	s := strconv.FormatFloat(f, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + units[u]
}

// parseExpiry reads a date (2027-01-31, meaning 00:00 UTC that day) or an
// RFC 3339 timestamp.
func parseExpiry(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("invalid date %q: want YYYY-MM-DD or an RFC 3339 time", s)
}

// formatTime writes a date when t is midnight UTC (how expiries are usually
// written), else minutes in UTC.
func formatTime(t time.Time) string {
	t = t.UTC()
	if t.Hour() == 0 && t.Minute() == 0 && t.Second() == 0 && t.Nanosecond() == 0 {
		return t.Format(time.DateOnly)
	}
	return t.Format("2006-01-02T15:04Z")
}
