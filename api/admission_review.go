package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Bounds on what one AdmissionReview may make us do. The API server caps
// objects at about 1.5 MiB, and a review of an UPDATE carries two of them.
const (
	maxReviewBytes = 8 << 20
	// maxPodImages bounds the container images of one pod spec (the API
	// server has no limit of its own on the number of containers).
	maxPodImages = 512
	// maxDistinctImages bounds the images judged for one review.
	maxDistinctImages = 64
	maxImageRefLength = 1024
)

// errNotAReview is a body that is not an AdmissionReview at all: it gets a
// plain 400, as there is no review to answer.
var errNotAReview = errors.New("not an AdmissionReview")

// containerImage is one image field of a pod spec and where it is, as a
// JSON pointer for the mutating webhook's patch.
type containerImage struct {
	Path  string
	Image string
}

// decodeReview reads an AdmissionReview v1. A body that is not JSON, or not
// an object, wraps errNotAReview; a review with something wrong in it is
// returned with the error, so the answer can carry the request's uid.
func decodeReview(body []byte) (*admissionReview, error) {
	var review admissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotAReview, err)
	}
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" {
		return &review, fmt.Errorf("want apiVersion admission.k8s.io/v1 and kind AdmissionReview, got %q %q (set admissionReviewVersions: [v1] in the webhook configuration)",
			truncate(review.APIVersion, 64), truncate(review.Kind, 64))
	}
	if review.Request == nil {
		return &review, errors.New("the review has no request")
	}
	if review.Request.UID == "" {
		return &review, errors.New("the review's request has no uid")
	}
	return &review, nil
}

// podImages lists every container, init container and ephemeral container
// image of the object a request is about: a Pod, or the pod template of a
// workload. ok is false for a kind that holds no pod spec.
func podImages(req *admissionRequest) (images []containerImage, ok bool, err error) {
	raw := req.Object
	if len(raw) == 0 || string(raw) == "null" {
		return nil, true, errors.New("the request has no object")
	}
	var spec *podSpecImages
	var prefix string
	switch req.Kind.Group + "/" + req.Kind.Kind {
	case "/Pod":
		var o podObject
		err, spec, prefix = decodeObject(raw, &o), &o.Spec, "/spec"
	case "/ReplicationController", "apps/Deployment", "apps/StatefulSet", "apps/DaemonSet", "apps/ReplicaSet", "batch/Job":
		var o templateObject
		err, prefix = decodeObject(raw, &o), "/spec/template/spec"
		if o.Spec.Template != nil {
			spec = &o.Spec.Template.Spec
		}
	case "batch/CronJob":
		var o cronJobObject
		err, prefix = decodeObject(raw, &o), "/spec/jobTemplate/spec/template/spec"
		if o.Spec.JobTemplate.Spec.Template != nil {
			spec = &o.Spec.JobTemplate.Spec.Template.Spec
		}
	default:
		return nil, false, nil
	}
	if err != nil {
		return nil, true, fmt.Errorf("decode %s: %w", truncate(req.Kind.Kind, 64), err)
	}
	if spec == nil {
		return nil, true, nil
	}
	lists := []struct {
		name       string
		containers []containerRef
	}{{"initContainers", spec.InitContainers}, {"containers", spec.Containers}, {"ephemeralContainers", spec.EphemeralContainers}}
	for _, l := range lists {
		for i, c := range l.containers {
			if len(images) == maxPodImages {
				return nil, true, fmt.Errorf("more than %d container images in one pod spec", maxPodImages)
			}
			images = append(images, containerImage{Path: prefix + "/" + l.name + "/" + strconv.Itoa(i) + "/image", Image: c.Image})
		}
	}
	return images, true, nil
}

// decodeObject decodes one object; trailing data after it is an error.
func decodeObject(raw []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(into); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the object")
	}
	return nil
}

// normalizeImage turns an image as a pod names it into the full reference
// a Kubernetes node pulls: "alpine" is docker.io/library/alpine:latest,
// "ghcr.io/org/app:1" stays, and a tag next to a digest is dropped (the
// digest is what the node pulls). registry is the registry host.
func normalizeImage(image string) (ref, registry string, err error) {
	if image == "" {
		return "", "", errors.New("empty image")
	}
	if len(image) > maxImageRefLength {
		return "", "", fmt.Errorf("image reference longer than %d bytes", maxImageRefLength)
	}
	if strings.ContainsFunc(image, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return "", "", errors.New("image reference has spaces, control or non-ASCII characters")
	}
	name, dgst, hasDigest := strings.Cut(image, "@")
	tag := ""
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	first, rest, hasSlash := strings.Cut(name, "/")
	if hasSlash && (strings.ContainsAny(first, ".:") || first == "localhost") {
		registry = strings.ToLower(first)
		name = rest
	} else {
		registry = "docker.io"
	}
	switch registry {
	case "index.docker.io", "registry-1.docker.io": // what Docker normalises to docker.io
		registry = "docker.io"
	}
	if registry == "docker.io" && name != "" && !strings.Contains(name, "/") {
		name = "library/" + name // Docker Hub's official images
	}
	if name == "" {
		return "", "", errors.New("no repository in image reference")
	}
	ref = registry + "/" + name
	switch {
	case hasDigest:
		ref += "@" + dgst
	case tag != "":
		ref += ":" + tag
	default:
		ref += ":latest"
	}
	return ref, registry, nil
}

// truncate cuts s to at most n bytes (on a rune boundary), marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
