package kubernetes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/policy"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	psaapi "k8s.io/pod-security-admission/api"
	psa "k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

var overlays = []string{"overlays/single", "overlays/ha"}

// object is one rendered manifest decoded into its k8s.io/api type.
type object struct {
	Kind, Name string
	Value      any
}

// newTyped returns an empty value of the k8s.io/api type of a kind the
// manifests may contain; an unexpected kind is an error, not a skip.
func newTyped(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}, nil
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration":
		return &admissionregistrationv1.ValidatingWebhookConfiguration{}, nil
	case "admissionregistration.k8s.io/v1/MutatingWebhookConfiguration":
		return &admissionregistrationv1.MutatingWebhookConfiguration{}, nil
	}
	return nil, fmt.Errorf("kind %s %s: not expected in the manifests (add it to newTyped)", apiVersion, kind)
}

// strictDecode decodes JSON into v and fails on any field v's type lacks.
func strictDecode(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the object")
	}
	return nil
}

// render runs kustomize on dir and decodes every object strictly.
func render(t *testing.T, dir string) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []object
	for _, res := range resMap.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatalf("%s: %s: %v", dir, res.CurId(), err)
		}
		objs = append(objs, decodeObject(t, dir, y))
	}
	return objs
}

func decodeObject(t *testing.T, where string, y []byte) object {
	t.Helper()
	raw, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	v, err := newTyped(head.APIVersion, head.Kind)
	if err != nil {
		t.Fatalf("%s: %s: %v", where, head.Metadata.Name, err)
	}
	if err := strictDecode(raw, v); err != nil {
		t.Fatalf("%s: %s %s: strict decode into %T: %v", where, head.Kind, head.Metadata.Name, v, err)
	}
	return object{Kind: head.Kind, Name: head.Metadata.Name, Value: v}
}

// podTemplate returns the pod template of a workload object, if it is one.
func podTemplate(o object) (*corev1.PodTemplateSpec, bool) {
	switch v := o.Value.(type) {
	case *appsv1.StatefulSet:
		return &v.Spec.Template, true
	case *appsv1.Deployment:
		return &v.Spec.Template, true
	case *appsv1.DaemonSet:
		return &v.Spec.Template, true
	}
	return nil, false
}

// restrictedExceptions names, per workload ("Kind/name"), the Pod Security
// checks it may fail and why; every other check of "restricted" applies.
// The mirror's own pods have none. A workload that needs host access (the
// node agent writes the host's containerd configuration through a hostPath)
// gets its entry here with exactly the checks it must break, e.g.
// "DaemonSet/portcullis-node-agent": {"hostPathVolumes", "restrictedVolumes"}
// (a hostPath breaks both).
var restrictedExceptions = map[string][]psa.CheckID{
	// Writes the host's containerd registry configuration: a hostPath, and
	// root to write into the root-owned directory (all capabilities
	// dropped, no privilege escalation, read-only root filesystem).
	"DaemonSet/portcullis-node-agent": {"hostPathVolumes", "restrictedVolumes", "runAsNonRoot", "runAsUser"},
}

// restrictedViolations evaluates a pod against the latest "restricted" Pod
// Security Standard, without the checks in skip, and returns what forbids
// it ("" when allowed).
func restrictedViolations(t *testing.T, meta *corev1.PodTemplateSpec, skip ...psa.CheckID) string {
	t.Helper()
	var checks []psa.Check
	for _, c := range psa.DefaultChecks() {
		if !slices.Contains(skip, c.ID) {
			checks = append(checks, c)
		}
	}
	ev, err := psa.NewEvaluator(checks, nil)
	if err != nil {
		t.Fatal(err)
	}
	lv := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	agg := psa.AggregateCheckResults(ev.EvaluatePod(lv, &meta.ObjectMeta, &meta.Spec))
	if agg.Allowed {
		return ""
	}
	return agg.ForbiddenReason() + ": " + agg.ForbiddenDetail()
}

// TestRestrictedCheckCanFail shows the Pod Security check refuses what it
// must: the mirror's pod template of overlays/single with one rule of
// "restricted" broken at a time.
func TestRestrictedCheckCanFail(t *testing.T) {
	var base *corev1.PodTemplateSpec
	for _, o := range render(t, "overlays/single") {
		if tpl, ok := podTemplate(o); ok && o.Kind == "StatefulSet" {
			base = tpl
		}
	}
	if base == nil {
		t.Fatal("overlays/single: no pod template")
	}
	for _, tc := range []struct {
		name   string
		break_ func(*corev1.PodTemplateSpec)
		want   string
		skip   []psa.CheckID // the checks whose exception allows it again, if any
	}{
		{"privilege escalation", func(p *corev1.PodTemplateSpec) {
			p.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
		}, "allowPrivilegeEscalation", []psa.CheckID{"allowPrivilegeEscalation"}},
		{"capabilities kept", func(p *corev1.PodTemplateSpec) {
			p.Spec.Containers[0].SecurityContext.Capabilities = nil
		}, "capabilities", nil},
		{"root allowed", func(p *corev1.PodTemplateSpec) {
			p.Spec.SecurityContext.RunAsNonRoot = nil
			p.Spec.Containers[0].SecurityContext.RunAsNonRoot = nil
		}, "runAsNonRoot", nil},
		{"no seccomp", func(p *corev1.PodTemplateSpec) {
			p.Spec.SecurityContext.SeccompProfile = nil
			p.Spec.Containers[0].SecurityContext.SeccompProfile = nil
		}, "seccompProfile", nil},
		{"host network", func(p *corev1.PodTemplateSpec) {
			p.Spec.HostNetwork = true
		}, "host namespaces", nil},
		{"hostPath", func(p *corev1.PodTemplateSpec) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc"}}})
		}, "hostPath", []psa.CheckID{"hostPathVolumes", "restrictedVolumes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base.DeepCopy()
			tc.break_(p)
			got := restrictedViolations(t, p)
			if !strings.Contains(got, tc.want) {
				t.Fatalf("restricted check of a pod with %s: %q, want a violation naming %q", tc.name, got, tc.want)
			}
			// An exception lifts exactly the named check.
			if tc.skip != nil {
				if got := restrictedViolations(t, p, tc.skip...); got != "" {
					t.Fatalf("restricted check without %s of a pod with %s: %q, want allowed", tc.skip, tc.name, got)
				}
			}
		})
	}
}

// TestOverlaysRenderStrictAndRestricted renders each overlay and checks
// every object: strict decoding, the restricted Pod Security Standard, the
// container security settings the issue names, probes, resources, image,
// TLS, the configuration and policy Portcullis will read, and the node
// address.
func TestOverlaysRenderStrictAndRestricted(t *testing.T) {
	for _, dir := range overlays {
		t.Run(strings.ReplaceAll(dir, "/", "_"), func(t *testing.T) {
			objs := render(t, dir)
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.Kind]++
			}
			for _, k := range []string{"Namespace", "ServiceAccount", "ConfigMap", "StatefulSet", "Service", "PodDisruptionBudget", "NetworkPolicy"} {
				if kinds[k] == 0 {
					t.Errorf("%s renders no %s", dir, k)
				}
			}
			for _, o := range objs {
				switch v := o.Value.(type) {
				case *corev1.ConfigMap:
					checkConfigMap(t, v)
				case *corev1.Service:
					if v.Spec.Type == corev1.ServiceTypeNodePort {
						if len(v.Spec.Ports) == 0 || v.Spec.Ports[0].NodePort == 0 {
							t.Errorf("Service %s: NodePort without a fixed nodePort: nodes' hosts.toml needs a stable port", v.Name)
						}
					}
				case *networkingv1.NetworkPolicy:
					checkNetworkPolicy(t, dir, v)
				case *appsv1.StatefulSet:
					checkStatefulSet(t, dir, v)
				}
				if clusterScoped := o.Kind == "Namespace" || strings.HasSuffix(o.Kind, "WebhookConfiguration"); !clusterScoped {
					if ns := o.Value.(interface{ GetNamespace() string }).GetNamespace(); ns != "portcullis" {
						t.Errorf("%s %s in namespace %q, want portcullis", o.Kind, o.Name, ns)
					}
				}
				tpl, ok := podTemplate(o)
				if !ok {
					continue
				}
				if got := restrictedViolations(t, tpl, restrictedExceptions[o.Kind+"/"+o.Name]...); got != "" {
					t.Errorf("%s %s: violates the restricted Pod Security Standard: %s", o.Kind, o.Name, got)
				}
				if o.Kind == "DaemonSet" {
					checkNodeAgent(t, o, tpl)
				} else {
					checkPodTemplate(t, o, tpl)
				}
			}
		})
	}
}

func checkPodTemplate(t *testing.T, o object, tpl *corev1.PodTemplateSpec) {
	t.Helper()
	spec := tpl.Spec
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s %s: the service account token is mounted; Portcullis does not call the API", o.Kind, o.Name)
	}
	for _, c := range spec.Containers {
		where := fmt.Sprintf("%s %s container %s", o.Kind, o.Name, c.Name)
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: readOnlyRootFilesystem is not true", where)
		}
		ref := c.Image
		if strings.HasSuffix(ref, ":latest") || !strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") && !strings.Contains(ref, "@sha256:") {
			t.Errorf("%s: image %q: want an explicit tag or digest, never latest", where, ref)
		}
		if c.StartupProbe == nil || c.ReadinessProbe == nil || c.LivenessProbe == nil {
			t.Fatalf("%s: want startup, readiness and liveness probes", where)
		}
		for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
				t.Errorf("%s: %s probe: want an HTTPS httpGet (the server listens with TLS)", where, name)
			}
		}
		if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: readiness on %s, liveness on %s; want /readyz and /healthz", where, c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: want cpu and memory requests and a memory limit, got %v", where, c.Resources)
		}
		mounts := map[string]string{}
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = m.Name
		}
		for _, path := range []string{"/var/lib/portcullis", "/tmp", "/etc/portcullis/tls"} {
			if mounts[path] == "" {
				t.Errorf("%s: nothing mounted at %s (the root filesystem is read-only)", where, path)
			}
		}
	}
	secrets := map[string]bool{}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			secrets[v.Secret.SecretName] = v.Secret.Optional != nil && *v.Secret.Optional
		}
	}
	for _, name := range []string{"portcullis-tls", "portcullis-api-tokens", "portcullis-upstream-credentials", "portcullis-signing-key"} {
		if _, ok := secrets[name]; !ok {
			t.Errorf("%s %s: no volume from the Secret %s", o.Kind, o.Name, name)
		}
	}
	if secrets["portcullis-tls"] {
		t.Errorf("%s %s: the TLS Secret is optional: without it the mirror would start without TLS", o.Kind, o.Name)
	}
}

// checkNodeAgent checks the node agent's pods: it serves nothing (no
// probes) and holds no secret but the mirror's CA; it keeps what
// "restricted" asks beyond its exceptions.
func checkNodeAgent(t *testing.T, o object, tpl *corev1.PodTemplateSpec) {
	t.Helper()
	spec := tpl.Spec
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s %s: the service account token is mounted; the agent does not call the API", o.Kind, o.Name)
	}
	for _, c := range spec.Containers {
		where := fmt.Sprintf("%s %s container %s", o.Kind, o.Name, c.Name)
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: readOnlyRootFilesystem is not true", where)
		}
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation is not false", where)
		}
		if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: want every capability dropped and none added", where)
		}
		if sc == nil || sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: privileged", where)
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName != "portcullis-tls" {
			t.Errorf("%s %s: mounts the Secret %s; the agent needs the mirror's CA only", o.Kind, o.Name, v.Secret.SecretName)
		}
	}
}

func checkStatefulSet(t *testing.T, dir string, s *appsv1.StatefulSet) {
	t.Helper()
	replicas := int32(1)
	if s.Spec.Replicas != nil {
		replicas = *s.Spec.Replicas
	}
	var dataFromPVC, dataEmptyDir bool
	for _, c := range s.Spec.VolumeClaimTemplates {
		dataFromPVC = dataFromPVC || c.Name == "data"
	}
	for _, v := range s.Spec.Template.Spec.Volumes {
		dataEmptyDir = dataEmptyDir || (v.Name == "data" && v.EmptyDir != nil)
	}
	switch dir {
	case "overlays/single":
		if replicas != 1 || !dataFromPVC || dataEmptyDir {
			t.Errorf("%s: %d replicas, data from a PVC %v, from an emptyDir %v; want 1 replica with its data on a PVC only", dir, replicas, dataFromPVC, dataEmptyDir)
		}
	case "overlays/ha":
		if replicas < 2 || dataFromPVC {
			t.Errorf("%s: %d replicas, data from a PVC %v; want several replicas sharing state (no per-replica PVC)", dir, replicas, dataFromPVC)
		}
		env := map[string]bool{}
		for _, e := range s.Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
		}
		for _, name := range []string{"REDIS_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
			if !env[name] {
				t.Errorf("%s: environment %s not from a Secret", dir, name)
			}
		}
	}
}

// checkConfigMap parses the configuration and the policy the pods mount
// with Portcullis' own parsers (unknown keys fail) and checks the paths
// they name are the ones the pod template mounts.
func checkConfigMap(t *testing.T, cm *corev1.ConfigMap) {
	t.Helper()
	raw, ok := cm.Data["portcullis.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s: no portcullis.yaml", cm.Name)
	}
	cfg := config.Default()
	if err := config.Parse([]byte(raw), &cfg); err != nil {
		t.Fatalf("ConfigMap %s: portcullis.yaml: %v", cm.Name, err)
	}
	if cfg.DataDir != "/var/lib/portcullis" || cfg.Policy != "/etc/portcullis/policy.yaml" ||
		cfg.TLS.CertFile != "/etc/portcullis/tls/tls.crt" || cfg.TLS.KeyFile != "/etc/portcullis/tls/tls.key" ||
		cfg.API.TokensFile != "/etc/portcullis/api-tokens/tokens.yaml" {
		t.Errorf("ConfigMap %s: data_dir %q policy %q tls %q %q tokens %q: not the paths the pod mounts", cm.Name, cfg.DataDir, cfg.Policy, cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.API.TokensFile)
	}
	if time.Duration(cfg.VulnDB.UpdateInterval) <= 0 {
		t.Errorf("ConfigMap %s: vulndb.update_interval off: the cluster would run without a vulnerability database", cm.Name)
	}
	pol, ok := cm.Data["policy.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s: no policy.yaml", cm.Name)
	}
	if _, err := policy.Parse([]byte(pol)); err != nil {
		t.Errorf("ConfigMap %s: policy.yaml: %v", cm.Name, err)
	}
}

func checkNetworkPolicy(t *testing.T, dir string, np *networkingv1.NetworkPolicy) {
	t.Helper()
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("NetworkPolicy %s: policyTypes %v, want Ingress and Egress", np.Name, np.Spec.PolicyTypes)
	}
	ports := map[int32]bool{}
	for _, rule := range np.Spec.Egress {
		if len(rule.To) == 0 || len(rule.Ports) == 0 {
			t.Errorf("NetworkPolicy %s: an egress rule open to every peer or every port", np.Name)
		}
		for _, p := range rule.Ports {
			if p.Port != nil {
				ports[p.Port.IntVal] = true
			}
		}
	}
	want := []int32{53, 443}
	if dir == "overlays/ha" {
		want = append(want, 6379)
	}
	for _, p := range want {
		if !ports[p] {
			t.Errorf("%s: NetworkPolicy %s: no egress to port %d", dir, np.Name, p)
		}
	}
}

// TestCertificateExample decodes the cert-manager example strictly (into
// the fields it uses) and checks it makes the Secret the pods mount.
func TestCertificateExample(t *testing.T) {
	b, err := os.ReadFile("examples/certificate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	var cert struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Spec struct {
			SecretName  string   `json:"secretName"`
			Duration    string   `json:"duration"`
			RenewBefore string   `json:"renewBefore"`
			DNSNames    []string `json:"dnsNames"`
			IPAddresses []string `json:"ipAddresses"`
			PrivateKey  struct {
				Algorithm      string `json:"algorithm"`
				Size           int    `json:"size"`
				RotationPolicy string `json:"rotationPolicy"`
			} `json:"privateKey"`
			IssuerRef struct {
				Name  string `json:"name"`
				Kind  string `json:"kind"`
				Group string `json:"group"`
			} `json:"issuerRef"`
		} `json:"spec"`
	}
	if err := strictDecode(raw, &cert); err != nil {
		t.Fatalf("examples/certificate.yaml: %v", err)
	}
	if cert.APIVersion != "cert-manager.io/v1" || cert.Kind != "Certificate" || cert.Metadata.Namespace != "portcullis" ||
		cert.Spec.SecretName != "portcullis-tls" || len(cert.Spec.DNSNames) == 0 || cert.Spec.IssuerRef.Name == "" {
		t.Errorf("examples/certificate.yaml: %+v: want a cert-manager.io/v1 Certificate in portcullis making the Secret portcullis-tls", cert)
	}
}

func TestStrictDecodeRefusesUnknownFields(t *testing.T) {
	y := []byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selector: {a: b}, prots: []}\n")
	raw, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	if err := strictDecode(raw, &corev1.Service{}); err == nil || !strings.Contains(err.Error(), "prots") {
		t.Fatalf("strictDecode of a Service with a misspelt field: %v, want an unknown field error", err)
	}
}
