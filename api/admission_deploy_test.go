package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The webhook configurations in deploy/ decode strictly into their
// Kubernetes types (a misspelt field fails), call the endpoints this
// handler serves, send v1 reviews, stay under the API server's timeout and
// only select kinds whose pod specs the handler reads.
func TestDeployedWebhookConfigurations(t *testing.T) {
	raw, err := os.ReadFile("../deploy/kubernetes/base/admission-webhook.yaml")
	if err != nil {
		t.Fatal(err)
	}
	handled := map[string]bool{"/pods": true, "/pods/ephemeralcontainers": true, "/replicationcontrollers": true,
		"apps/deployments": true, "apps/statefulsets": true, "apps/daemonsets": true, "apps/replicasets": true,
		"batch/jobs": true, "batch/cronjobs": true}
	served := map[string]bool{}
	for _, rt := range routes() {
		served[rt.pattern] = true
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	kinds := map[string]bool{}
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		asJSON, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		strict := func(into any) {
			d := json.NewDecoder(bytes.NewReader(asJSON))
			d.DisallowUnknownFields()
			if err := d.Decode(into); err != nil {
				t.Fatalf("%s: %v", doc["kind"], err)
			}
		}
		type hook struct {
			name     string
			cfg      admissionregistrationv1.WebhookClientConfig
			versions []string
			timeout  *int32
			failure  *admissionregistrationv1.FailurePolicyType
			rules    []admissionregistrationv1.RuleWithOperations
			nsSel    *metav1.LabelSelector
		}
		var hooks []hook
		switch doc["kind"] {
		case "ValidatingWebhookConfiguration":
			var c admissionregistrationv1.ValidatingWebhookConfiguration
			strict(&c)
			for _, w := range c.Webhooks {
				hooks = append(hooks, hook{w.Name, w.ClientConfig, w.AdmissionReviewVersions, w.TimeoutSeconds, w.FailurePolicy, w.Rules, w.NamespaceSelector})
			}
		case "MutatingWebhookConfiguration":
			var c admissionregistrationv1.MutatingWebhookConfiguration
			strict(&c)
			for _, w := range c.Webhooks {
				hooks = append(hooks, hook{w.Name, w.ClientConfig, w.AdmissionReviewVersions, w.TimeoutSeconds, w.FailurePolicy, w.Rules, w.NamespaceSelector})
			}
		default:
			t.Fatalf("unexpected kind %v", doc["kind"])
		}
		kinds[doc["kind"].(string)] = true
		for _, h := range hooks {
			if h.cfg.Service == nil || h.cfg.Service.Path == nil || !served[*h.cfg.Service.Path] {
				t.Errorf("%s: path not served: %+v", h.name, h.cfg.Service)
			}
			if !slices.Equal(h.versions, []string{"v1"}) || h.timeout == nil || *h.timeout > 30 || h.failure == nil {
				t.Errorf("%s: versions %v timeout %v failurePolicy %v", h.name, h.versions, h.timeout, h.failure)
			}
			// The opt-out label and Portcullis' own namespace are skipped by
			// the API server (a review does not carry namespace labels);
			// evaluated with the API server's own selector code.
			sel, err := metav1.LabelSelectorAsSelector(h.nsSel)
			if h.nsSel == nil || err != nil {
				t.Errorf("%s: namespaceSelector %v: %v", h.name, h.nsSel, err)
			} else {
				for _, c := range []struct {
					labels labels.Set
					sent   bool
				}{
					{labels.Set{"kubernetes.io/metadata.name": "shop"}, true},
					{labels.Set{"kubernetes.io/metadata.name": "shop", "portcullis.dev/admission": "enabled"}, true},
					{labels.Set{"kubernetes.io/metadata.name": "shop", "portcullis.dev/admission": "disabled"}, false},
					{labels.Set{"kubernetes.io/metadata.name": "portcullis"}, false},
					{labels.Set{"kubernetes.io/metadata.name": "kube-system"}, false},
				} {
					if sel.Matches(c.labels) != c.sent {
						t.Errorf("%s: namespace %v reviewed: %v, want %v", h.name, c.labels, !c.sent, c.sent)
					}
				}
			}
			for _, r := range h.rules {
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						if !handled[g+"/"+res] {
							t.Errorf("%s selects %s/%s, whose pod spec the handler does not read", h.name, g, res)
						}
					}
				}
			}
		}
	}
	if !kinds["ValidatingWebhookConfiguration"] || !kinds["MutatingWebhookConfiguration"] {
		t.Fatalf("kinds: %v", kinds)
	}
}
