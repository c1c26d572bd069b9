package api

import "encoding/json"

// The admission.k8s.io/v1 wire format, only the fields the webhook reads
// and writes. Hand-written rather than k8s.io/api's types: those brought
// 11 MB into the binary (110.9 MB against 99.5 MB) for a dozen fields, and
// decoding whole objects made a review fail on fields it never reads.
// The tests decode our answers with k8s.io/api's types, so the two agree.
// https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#request

type admissionReview struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Request    *admissionRequest  `json:"request,omitempty"`
	Response   *admissionResponse `json:"response,omitempty"`
}

type admissionRequest struct {
	UID       string           `json:"uid"`
	Kind      groupVersionKind `json:"kind"`
	Namespace string           `json:"namespace,omitempty"`
	Name      string           `json:"name,omitempty"`
	Operation string           `json:"operation"`
	Object    json.RawMessage  `json:"object,omitempty"`
	OldObject json.RawMessage  `json:"oldObject,omitempty"`
}

type groupVersionKind struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// Operations a request may be for.
const (
	opCreate = "CREATE"
	opUpdate = "UPDATE"
)

type admissionResponse struct {
	UID       string           `json:"uid"`
	Allowed   bool             `json:"allowed"`
	Result    *admissionStatus `json:"status,omitempty"`
	Patch     []byte           `json:"patch,omitempty"` // base64 in JSON, as the API server expects
	PatchType string           `json:"patchType,omitempty"`
	Warnings  []string         `json:"warnings,omitempty"`
}

// admissionStatus is a metav1.Status.
type admissionStatus struct {
	Status  string `json:"status"` // Failure
	Message string `json:"message,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Code    int32  `json:"code"`
}

const (
	patchTypeJSONPatch = "JSONPatch"
	statusFailure      = "Failure"
	reasonForbidden    = "Forbidden"
	reasonBadRequest   = "BadRequest"
	reasonInternal     = "InternalError"
)

// What a pod spec holds that the webhook reads, and the objects that hold
// one. Unknown fields are ignored, as the API server has validated them.
type podSpecImages struct {
	InitContainers      []containerRef `json:"initContainers"`
	Containers          []containerRef `json:"containers"`
	EphemeralContainers []containerRef `json:"ephemeralContainers"`
}

type containerRef struct {
	Image string `json:"image"`
}

type podObject struct {
	Spec podSpecImages `json:"spec"`
}

type podTemplate struct {
	Spec podSpecImages `json:"spec"`
}

// templateObject is a Deployment, StatefulSet, DaemonSet, ReplicaSet,
// ReplicationController or Job: spec.template.spec.
type templateObject struct {
	Spec struct {
		Template *podTemplate `json:"template"`
	} `json:"spec"`
}

// cronJobObject: spec.jobTemplate.spec.template.spec.
type cronJobObject struct {
	Spec struct {
		JobTemplate struct {
			Spec struct {
				Template *podTemplate `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
}
