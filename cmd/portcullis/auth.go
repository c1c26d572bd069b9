package main

import (
	"log/slog"
	"net"
	"strings"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/proxy/auth"
)

// newAuth builds who-may-pull-what from the auth section; nil when the
// section is empty (an open mirror).
func newAuth(c config.Auth, log *slog.Logger) (*auth.Auth, error) {
	if !c.Enabled() {
		return nil, nil
	}
	rules := make([]auth.Rule, len(c.Access))
	for i, r := range c.Access {
		rules[i] = auth.Rule{Users: r.Users, Upstreams: r.Upstreams, Repositories: r.Repositories}
	}
	if c.Access == nil {
		rules = nil // no rules: every caller may pull everything
	}
	return auth.New(auth.Config{Htpasswd: c.Htpasswd, Anonymous: *c.Anonymous, Access: rules, Logger: log})
}

// loopbackOnly reports whether a listen address is reachable only from
// this machine: a loopback IP or the name localhost. An empty or
// unspecified host (all interfaces) and any other name are not.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return ip != nil && ip.IsLoopback()
}
