package config

import (
	"strings"
	"testing"
	"time"
)

func TestExceptionsKeys(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       time.Duration
		errHas     string
	}{
		{name: "default", yaml: "", want: 90 * 24 * time.Hour},
		{name: "days", yaml: "exceptions:\n  max_duration: 14d\n", want: 14 * 24 * time.Hour},
		{name: "hours", yaml: "exceptions:\n  max_duration: 36h\n", want: 36 * time.Hour},
		{name: "zero", yaml: "exceptions:\n  max_duration: 0s\n", errHas: "exceptions.max_duration must be positive"},
		{name: "negative", yaml: "exceptions:\n  max_duration: -1h\n", errHas: "exceptions.max_duration must be positive"},
		{name: "unknown key", yaml: "exceptions:\n  max: 1d\n", errHas: `unknown key "max" in exceptions`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			err := Parse([]byte(tc.yaml), &c)
			if err == nil {
				err = c.Finish()
			}
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err %v, want %q", err, tc.errHas)
				}
				return
			}
			if err != nil || time.Duration(c.Exceptions.MaxDuration) != tc.want {
				t.Fatalf("%v %v", err, time.Duration(c.Exceptions.MaxDuration))
			}
		})
	}
}
