package main

import (
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/portcullis/portcullis/alerts"
	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/store"
)

// newAlerter builds the alerter of the configured webhooks (nil: none),
// reading their URL and secret files now, so a bad one stops the start.
func newAlerter(cfg config.Config, leases store.Leases, replica string, meter metric.Meter, log *slog.Logger) (*alerts.Alerter, error) {
	if len(cfg.Alerts.Webhooks) == 0 {
		return nil, nil
	}
	var hooks []alerts.Webhook
	for _, w := range cfg.Alerts.Webhooks {
		u, err := w.ReadURL()
		if err != nil {
			return nil, err
		}
		secret, err := w.ReadSecret()
		if err != nil {
			return nil, err
		}
		hooks = append(hooks, alerts.Webhook{Name: w.Name, URL: u, Format: w.Format, Events: w.Events, Secret: secret,
			MinSeverity: w.MinSeverity, DedupeWindow: time.Duration(w.DedupeWindow)})
	}
	a, err := alerts.New(alerts.Options{Webhooks: hooks, Leases: leases, Owner: replica, PublicURL: cfg.PublicURL, Meter: meter, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	return a, nil
}
