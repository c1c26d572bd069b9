package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/pipeline"
)

// policyCheckInterval is how often the policy file is read again. Polling
// the content, not watching inodes, also follows Kubernetes ConfigMap
// updates, which swap a symlink.
const policyCheckInterval = 5 * time.Second

// watchPolicy keeps the policy in force in step with its file: every
// interval, and at once on SIGHUP, the file is read again. A changed valid
// policy is put in force and every stored verdict re-evaluated; an invalid
// file is reported (with its line) and the policy in force stays, so a
// typo never opens or closes the gate. At start, verdicts made under an
// earlier policy are re-evaluated too.
func watchPolicy(ctx context.Context, path string, pl *pipeline.Pipeline, interval time.Duration, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reevaluate(ctx, pl, log)
	t := time.NewTicker(interval)
	defer t.Stop()
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info("SIGHUP: reading the policy again", "file", path)
		case <-t.C:
		}
		pol, err := loadPolicy(path)
		if err != nil {
			if err.Error() != lastErr {
				log.Error("policy not reloaded; the one in force stays", "file", path, "version", pl.Policy().Version(), "err", err)
			}
			lastErr = err.Error()
			continue
		}
		lastErr = ""
		if pol.Version() == pl.Policy().Version() {
			continue
		}
		pl.SetPolicy(pol)
		log.Info("policy reloaded", "file", path, "version", pol.Version(), "rules", len(pol.Rules))
		recordPolicyReload(ctx, pl, pol.Version(), path, len(pol.Rules), log)
		reevaluate(ctx, pl, log)
	}
}

func reevaluate(ctx context.Context, pl *pipeline.Pipeline, log *slog.Logger) {
	n, err := pl.Reevaluate(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		log.Error("re-evaluate stored verdicts", "err", err)
	case n > 0:
		log.Info("re-evaluated stored verdicts", "policy_version", pl.Policy().Version(), "images", n)
	}
}
