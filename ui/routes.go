package ui

import (
	"net/http"
	"strings"
)

type routeName int

const (
	routeOverview routeName = iota
	routeImages
	routeImage
	routeRescan
	routeVulnerability
	routePolicy
	routeEvents
	routeStatic
	routeLogin
	routeLogout
)

// route is one page: its path (a {name} segment matches one non-empty
// path segment), the methods it answers, and whether it changes state
// (then POST only and CSRF-checked; the rescan also needs admin).
type route struct {
	name    routeName
	pattern string
	methods []string
	mutates bool
}

// routeTable is read-only: built once, never written.
var routeTable = []route{
	{routeOverview, "/ui/", []string{http.MethodGet, http.MethodHead}, false},
	{routeImages, "/ui/images", []string{http.MethodGet, http.MethodHead}, false},
	{routeImage, "/ui/images/{digest}", []string{http.MethodGet, http.MethodHead}, false},
	{routeRescan, "/ui/images/{digest}/scan", []string{http.MethodPost}, true},
	{routeVulnerability, "/ui/vulnerabilities/{id}", []string{http.MethodGet, http.MethodHead}, false},
	{routePolicy, "/ui/policy", []string{http.MethodGet, http.MethodHead}, false},
	{routeEvents, "/ui/events", []string{http.MethodGet}, false},
	{routeStatic, "/ui/static/{file}", []string{http.MethodGet, http.MethodHead}, false},
	// Logging in or out changes no stored state, only the browser's
	// cookie; both POSTs are CSRF-checked all the same.
	{routeLogin, "/ui/login", []string{http.MethodGet, http.MethodHead, http.MethodPost}, false},
	{routeLogout, "/ui/logout", []string{http.MethodPost}, true},
}

// matchRoute finds the route of path and the value of its {param}.
func matchRoute(path string) (route, string, bool) {
	for _, rt := range routeTable {
		if param, ok := matchPattern(rt.pattern, path); ok {
			return rt, param, true
		}
	}
	return route{}, "", false
}

func matchPattern(pattern, path string) (string, bool) {
	pp, ps := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(pp) != len(ps) {
		return "", false
	}
	var param string
	for i, want := range pp {
		switch {
		case strings.HasPrefix(want, "{"):
			if ps[i] == "" {
				return "", false
			}
			param = ps[i]
		case want != ps[i]:
			return "", false
		}
	}
	return param, true
}
