package bench

import (
	"strings"
	"testing"
	"time"
)

func TestParseRedisInfo(t *testing.T) {
	const full = "# Stats\r\ntotal_connections_received:12\r\ntotal_commands_processed:4711\r\n\r\n# CPU\r\nused_cpu_sys:1.250000\r\nused_cpu_user:0.750000\r\nused_cpu_sys_children:9.0\r\n"
	for _, tc := range []struct {
		name    string
		raw     string
		want    redisCounters
		wantErr bool
	}{
		{"full", full, redisCounters{commands: 4711, cpu: 2 * time.Second}, false},
		{"no commands", strings.Replace(full, "total_commands_processed:4711", "", 1), redisCounters{}, true},
		{"no user cpu", strings.Replace(full, "used_cpu_user:0.750000", "", 1), redisCounters{}, true},
		{"bad count", strings.Replace(full, "4711", "47x1", 1), redisCounters{}, true},
		{"negative cpu", strings.Replace(full, "1.250000", "-1", 1), redisCounters{}, true},
		{"NaN cpu", strings.Replace(full, "1.250000", "NaN", 1), redisCounters{}, true},
		{"fields past the line bound", strings.Repeat("x:1\n", 2000) + full, redisCounters{}, true},
		{"empty", "", redisCounters{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRedisInfo(tc.raw)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseRedisInfo = %+v, %v; want %+v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// FuzzParseRedisInfo: any answer gives counters or an error, never a panic,
// and counters only when every field was there and valid.
func FuzzParseRedisInfo(f *testing.F) {
	f.Add("total_commands_processed:1\r\nused_cpu_sys:0.5\r\nused_cpu_user:0.5\r\n")
	f.Add("# Stats\ntotal_commands_processed:-3\nused_cpu_sys:1e300\nused_cpu_user:NaN\n")
	f.Add(":::\n\n#")
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := parseRedisInfo(raw)
		if err != nil && got != (redisCounters{}) {
			t.Errorf("error %v with counters %+v", err, got)
		}
		if err == nil && (!strings.Contains(raw, "total_commands_processed:") || !strings.Contains(raw, "used_cpu_user:")) {
			t.Errorf("counters %+v from an answer without the fields", got)
		}
	})
}
