package main

import (
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/portcullis/portcullis/config"
)

func TestAdmissionOptions(t *testing.T) {
	c := config.DefaultAdmission()
	a := admissionOptions(c, nil)
	if a.Audit || a.AllowUnknownRegistries || a.Timeout != 8*time.Second || !a.Platform.Equals(v1.Platform{OS: "linux", Architecture: "amd64"}) || a.Gate != nil {
		t.Fatalf("defaults: %+v", a)
	}
	c = config.Admission{Mode: "audit", Timeout: config.Duration(3 * time.Second), UnknownRegistries: "allow", ExemptNamespaces: []string{"kube-system"}, Platform: "linux/arm64/v8"}
	a = admissionOptions(c, nil)
	if !a.Audit || !a.AllowUnknownRegistries || a.Timeout != 3*time.Second || !a.Platform.Equals(v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}) || a.ExemptNamespaces[0] != "kube-system" {
		t.Fatalf("%+v", a)
	}
}
