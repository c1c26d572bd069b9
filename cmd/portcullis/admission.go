package main

import (
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/proxy"
)

// admissionOptions configures the admission webhook from api.admission.
// gate is the pull path's gate, nil when scanning is off: the webhook then
// judges exactly what a pull would get.
func admissionOptions(c config.Admission, gate proxy.Gate) api.Admission {
	a := api.Admission{
		Gate:                   gate,
		Audit:                  c.Mode == config.AdmissionAudit,
		Timeout:                time.Duration(c.Timeout),
		AllowUnknownRegistries: c.UnknownRegistries == "allow",
		ExemptNamespaces:       c.ExemptNamespaces,
	}
	// Checked by config.Finish: os/arch[/variant].
	if parts := strings.Split(c.Platform, "/"); len(parts) >= 2 {
		a.Platform = v1.Platform{OS: parts[0], Architecture: parts[1]}
		if len(parts) == 3 {
			a.Platform.Variant = parts[2]
		}
	}
	return a
}
