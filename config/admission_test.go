package config

import (
	"strings"
	"testing"
	"time"
)

func TestAdmissionSettings(t *testing.T) {
	tests := []struct {
		yaml string
		want string // in Finish's error; "" for none
	}{
		{"", ""},
		{"api: {admission: {mode: audit, timeout: 5s, unknown_registries: allow, exempt_namespaces: [kube-system], platform: linux/arm64/v8}}", ""},
		{"api: {admission: {mode: warn}}", "api.admission.mode"},
		{"api: {admission: {timeout: 0s}}", "api.admission.timeout"},
		{"api: {admission: {timeout: 31s}}", "api.admission.timeout"},
		{"api: {admission: {unknown_registries: maybe}}", "api.admission.unknown_registries"},
		{"api: {admission: {exempt_namespaces: [Kube_System]}}", "api.admission.exempt_namespaces[0]"},
		{"api: {admission: {platform: linux}}", "api.admission.platform"},
		{"api: {admission: {platform: linux//amd64}}", "api.admission.platform"},
	}
	for _, tt := range tests {
		c := Default()
		if err := Parse([]byte(tt.yaml), &c); err != nil {
			t.Fatalf("%s: %v", tt.yaml, err)
		}
		err := c.Finish()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want %q", tt.yaml, err, tt.want)
		}
	}
	c := Default()
	if a := c.API.Admission; a.Mode != "enforce" || time.Duration(a.Timeout) != 8*time.Second || a.UnknownRegistries != "deny" || a.Platform != "linux/amd64" {
		t.Fatalf("defaults: %+v", a)
	}
	// A key under admission that does not exist is refused with its line.
	if err := Parse([]byte("api:\n  admission:\n    mood: audit\n"), &c); err == nil || !strings.Contains(err.Error(), "mood") {
		t.Fatalf("unknown key: %v", err)
	}
}
