package api

import (
	"net/http"
	"slices"
	"strings"
)

type routeName int

const (
	routeScans routeName = iota
	routeScan
	routeSBOM
	routeReport
	routeImages
	routeVulnerability
	routeEvents
	routeOpenAPI
	routeAdmission
	routeAdmissionMutate
	routeOverview
	routeQuarantines
	routeQuarantine
	routeExceptions
	routeException
	routeAudit
)

// route is one endpoint: its OpenAPI path (a {name} segment matches any
// one path segment), the methods it answers and how to call it, for 405s.
type route struct {
	name    routeName
	pattern string
	methods []string
	usage   string
}

func (rt route) allows(method string) bool { return slices.Contains(rt.methods, method) }

// routes is every endpoint the handler serves; the OpenAPI test walks it.
func routes() []route { return routeTable }

// routeTable is read-only: built once, never written.
var routeTable = []route{
	{routeScans, "/api/v1/scans", []string{http.MethodPost}, "POST /api/v1/scans?image=REF"},
	{routeScan, "/api/v1/scans/{digest}", []string{http.MethodGet, http.MethodHead}, "GET /api/v1/scans/{digest}"},
	{routeSBOM, "/api/v1/scans/{digest}/sbom", []string{http.MethodGet}, "GET /api/v1/scans/{digest}/sbom?format=cyclonedx|spdx"},
	{routeReport, "/api/v1/scans/{digest}/report", []string{http.MethodGet}, "GET /api/v1/scans/{digest}/report?format=sarif"},
	{routeImages, "/api/v1/images", []string{http.MethodGet}, "GET /api/v1/images?ref=REF or GET /api/v1/images?limit=N"},
	{routeVulnerability, "/api/v1/vulnerabilities/{id}", []string{http.MethodGet}, "GET /api/v1/vulnerabilities/{id}"},
	{routeOverview, "/api/v1/overview", []string{http.MethodGet}, "GET /api/v1/overview"},
	{routeEvents, "/api/v1/events", []string{http.MethodGet}, "GET /api/v1/events"},
	{routeOpenAPI, "/api/v1/openapi.json", []string{http.MethodGet}, "GET /api/v1/openapi.json"},
	{routeAdmission, "/api/v1/admission", []string{http.MethodPost}, "POST /api/v1/admission with an AdmissionReview (admission.k8s.io/v1)"},
	{routeAdmissionMutate, "/api/v1/admission/mutate", []string{http.MethodPost}, "POST /api/v1/admission/mutate with an AdmissionReview (admission.k8s.io/v1)"},
	{routeQuarantines, "/api/v1/quarantine", []string{http.MethodGet, http.MethodPost}, `POST /api/v1/quarantine {"digest","reason","expires"?} or GET /api/v1/quarantine?cursor=&limit=`},
	{routeQuarantine, "/api/v1/quarantine/{digest}", []string{http.MethodDelete}, "DELETE /api/v1/quarantine/{digest}"},
	{routeExceptions, "/api/v1/exceptions", []string{http.MethodGet, http.MethodPost}, `POST /api/v1/exceptions {"digest","repository"?,"reason","expires"} or GET /api/v1/exceptions?cursor=&limit=`},
	{routeException, "/api/v1/exceptions/{exceptionId}", []string{http.MethodDelete}, "DELETE /api/v1/exceptions/{exceptionId}"},
	{routeAudit, "/api/v1/audit", []string{http.MethodGet}, "GET /api/v1/audit?since=RFC3339&kind=K&cursor=C&limit=N"},
}

// matchRoute finds the route of path and the value of its one {param}
// segment, if it has one.
func matchRoute(path string) (route, string, bool) {
	for _, rt := range routes() {
		if param, ok := matchPattern(rt.pattern, path); ok {
			return rt, param, true
		}
	}
	return route{}, "", false
}

func matchPattern(pattern, path string) (string, bool) {
	var param string
	for {
		want, wantRest, wantMore := strings.Cut(pattern, "/")
		got, gotRest, gotMore := strings.Cut(path, "/")
		switch {
		case strings.HasPrefix(want, "{"):
			param = got
		case want != got:
			return "", false
		}
		if wantMore != gotMore {
			return "", false
		}
		if !wantMore {
			return param, true
		}
		pattern, path = wantRest, gotRest
	}
}
