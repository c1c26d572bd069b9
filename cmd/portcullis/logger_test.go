package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/config"
)

// TestLogDurationsInSeconds: a duration in a log line is seconds with the
// unit, in both formats (JSON wrote bare nanoseconds), also inside groups
// and in attributes added with With.
func TestLogDurationsInSeconds(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{1234 * time.Millisecond, "1.234s"},
		{15 * time.Millisecond, "0.015s"},
		{0, "0.000s"},
		{2*time.Minute + 500*time.Millisecond, "120.500s"},
	} {
		var buf bytes.Buffer
		log := newLogger(config.Log{Level: "info", Format: "json"}, &buf)
		log.With("waited", tc.d).WithGroup("g").Info("x", "duration", tc.d)
		var line struct {
			Duration any            `json:"duration"`
			Waited   any            `json:"waited"`
			G        map[string]any `json:"g"`
		}
		if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
			t.Fatalf("%v: %s", err, buf.Bytes())
		}
		if line.Waited != tc.want || line.G["duration"] != tc.want {
			t.Errorf("%s: JSON line %s, want %q", tc.d, buf.Bytes(), tc.want)
		}
		if _, err := time.ParseDuration(tc.want); err != nil {
			t.Errorf("%q does not parse back: %v", tc.want, err)
		}

		buf.Reset()
		newLogger(config.Log{Level: "info", Format: "json"}, &buf).Info("x", "duration", config.Duration(tc.d))
		if !strings.Contains(buf.String(), `"duration":"`+tc.want+`"`) {
			t.Errorf("%s: config.Duration logged as %s, want %q", tc.d, buf.Bytes(), tc.want)
		}

		buf.Reset()
		newLogger(config.Log{Level: "info", Format: "text"}, &buf).Info("x", "duration", tc.d)
		if !strings.Contains(buf.String(), "duration="+tc.want) {
			t.Errorf("%s: text line %q, want duration=%s", tc.d, buf.String(), tc.want)
		}
	}
}
