package config

import (
	"fmt"
	"strings"
	"time"
)

// Admission configures the Kubernetes admission webhook the API serves
// (POST /api/v1/admission and /api/v1/admission/mutate).
type Admission struct {
	// Mode: enforce denies pods with blocked images; audit admits them
	// with a warning that says they would have been denied.
	Mode string `yaml:"mode"`
	// Timeout bounds one review, evaluation included. It must stay under
	// the webhook's timeoutSeconds (10 s by default, 30 s at most), or the
	// API server gives up first and failurePolicy decides instead of us.
	Timeout Duration `yaml:"timeout"`
	// UnknownRegistries is what images of registries that are not
	// configured upstreams get: deny (nodes cannot pull them through the
	// mirror) or allow (with a warning).
	UnknownRegistries string `yaml:"unknown_registries"`
	// ExemptNamespaces are admitted without a look, like namespaces
	// labelled portcullis.dev/admission=disabled (which the webhook
	// configuration's namespaceSelector exempts on the API server's side:
	// a review does not carry its namespace's labels).
	ExemptNamespaces []string `yaml:"exempt_namespaces"`
	// Platform is the os/arch[/variant] whose manifest is judged when an
	// image is multi-platform; default linux/amd64.
	Platform string `yaml:"platform"`
}

// Admission defaults.
const (
	AdmissionEnforce = "enforce"
	AdmissionAudit   = "audit"
	// DefaultAdmissionTimeout leaves 2 s of the API server's default 10 s
	// for the network and the answer.
	DefaultAdmissionTimeout = 8 * time.Second
	maxAdmissionTimeout     = 30 * time.Second // the webhook's timeoutSeconds maximum
)

// DefaultAdmission is the webhook configuration with no keys set.
func DefaultAdmission() Admission {
	return Admission{Mode: AdmissionEnforce, Timeout: Duration(DefaultAdmissionTimeout), UnknownRegistries: "deny", Platform: "linux/amd64"}
}

// check lists what is wrong with the admission settings.
func (a Admission) check() []string {
	var problems []string
	switch a.Mode {
	case AdmissionEnforce, AdmissionAudit:
	default:
		problems = append(problems, fmt.Sprintf("api.admission.mode: %q must be enforce or audit", a.Mode))
	}
	if t := time.Duration(a.Timeout); t < 100*time.Millisecond || t > maxAdmissionTimeout {
		problems = append(problems, fmt.Sprintf("api.admission.timeout: %s must be from 100ms to %s, and under the webhook's timeoutSeconds", t, maxAdmissionTimeout))
	}
	switch a.UnknownRegistries {
	case "deny", "allow":
	default:
		problems = append(problems, fmt.Sprintf("api.admission.unknown_registries: %q must be deny or allow", a.UnknownRegistries))
	}
	for i, ns := range a.ExemptNamespaces {
		if ns == "" || len(ns) > 63 || strings.Trim(ns, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			problems = append(problems, fmt.Sprintf("api.admission.exempt_namespaces[%d]: %q is not a namespace name", i, ns))
		}
	}
	parts := strings.Split(a.Platform, "/")
	if len(parts) < 2 || len(parts) > 3 || strings.Contains(a.Platform, "//") || strings.HasSuffix(a.Platform, "/") {
		problems = append(problems, fmt.Sprintf("api.admission.platform: %q must be os/arch[/variant], e.g. linux/amd64", a.Platform))
	}
	return problems
}
