package main

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/proxy/auth"
	"github.com/portcullis/portcullis/store"
)

// wireOperators gives the status API the operators' controls: the store
// that keeps quarantines, exceptions and the audit log, and the pipeline
// that records and announces each change.
func wireOperators(h *api.Handler, state store.Store, pl *pipeline.Pipeline, cfg config.Config) {
	h.OperatorStore = state
	h.AuditLog = state
	h.Audit = pl.Audit
	h.MaxExceptionDuration = time.Duration(cfg.Exceptions.MaxDuration)
}

// wireOperatorUser names the htpasswd user of an API request as who made
// a change, when htpasswd guards the API (tokens, when set, name it first).
func wireOperatorUser(apiHandler http.Handler, access *auth.Auth) {
	if h, ok := apiHandler.(*api.Handler); ok && access != nil {
		h.UserOf = access.User
	}
}

// recordPolicyReload puts a policy reload on the audit log (and so on the
// event stream and the webhooks). The new policy is in force either way.
func recordPolicyReload(ctx context.Context, pl *pipeline.Pipeline, version, path string, rules int, log *slog.Logger) {
	rec := store.AuditRecord{Kind: store.AuditPolicyReload, Who: "portcullis", What: version,
		Details: map[string]string{"file": path, "rules": strconv.Itoa(rules)}}
	if _, err := pl.Audit(ctx, rec); err != nil {
		log.Error("policy reload not on the audit log", "version", version, "err", err)
	}
}
