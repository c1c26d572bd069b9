package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/portcullis/portcullis/telemetry"
)

// tracingFlushTimeout bounds the export of the spans still queued at exit.
const tracingFlushTimeout = 5 * time.Second

// startTracing builds tracing from the standard OTEL_* variables (off
// without an OTLP endpoint); stop flushes what is queued.
func startTracing(ctx context.Context, log *slog.Logger) (t *telemetry.Tracing, stop func(), err error) {
	t, err = telemetry.NewTracing(ctx, log)
	if err != nil {
		return nil, nil, err
	}
	return t, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tracingFlushTimeout)
		defer cancel()
		if err := t.Shutdown(sctx); err != nil {
			log.Warn("traces: flush at exit", "err", err)
		}
	}, nil
}
