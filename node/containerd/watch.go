package containerd

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// Interval bounds for Watch: often enough to repair drift quickly, never
// a busy loop.
const (
	MinInterval = time.Second
	MaxInterval = time.Hour
)

// Load builds the desired configuration; Watch calls it every pass so a
// changed Portcullis configuration or CA file is picked up.
type Load func() (Desired, error)

// Watch runs Sync every interval until ctx ends. A pass whose Load fails,
// or loads a configuration Sync cannot write (Desired.Validate), keeps the
// last good configuration: it never removes the files because a
// configuration file is briefly unreadable, and one bad upstream name does
// not stop the repair of every other file. The first pass must load.
// When ctx ends it returns nil and leaves every file in place.
func Watch(ctx context.Context, logger *slog.Logger, certsDir string, interval time.Duration, load Load) error {
	if interval < MinInterval || interval > MaxInterval {
		return fmt.Errorf("interval %s: want between %s and %s", interval, MinInterval, MaxInterval)
	}
	last, err := loadValid(load)
	if err != nil {
		return err
	}
	var lastForeign []string
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		res, err := Sync(certsDir, last)
		report(logger, res, err, &lastForeign)
		select {
		case <-ctx.Done():
			// The files stay: removing them would send the node's pulls to
			// the origins while the agent is away (restart, upgrade).
			logger.Info("node agent: stopped; the host configuration stays in place (to undo, delete the files marked portcullis-managed)", "certs_dir", certsDir)
			return nil
		case <-ticker.C:
		}
		d, err := loadValid(load)
		if err != nil {
			logger.Error("node agent: configuration not reloaded; keeping the last good one", "err", err)
			continue
		}
		last = d
	}
}

// loadValid loads a configuration and checks that Sync can write it.
func loadValid(load Load) (Desired, error) {
	d, err := load()
	if err != nil {
		return Desired{}, err
	}
	if err := d.Validate(); err != nil {
		return Desired{}, err
	}
	return d, nil
}

// report logs what a pass did: changes at INFO, foreign files at WARN only
// when the set changes (a poll every few seconds must not flood the log).
func report(logger *slog.Logger, res Result, err error, lastForeign *[]string) {
	if res.Changed() {
		logger.Info("node agent: containerd host configuration updated", "written", res.Written, "removed", res.Removed)
	}
	if !slices.Equal(res.Foreign, *lastForeign) {
		if len(res.Foreign) > 0 {
			logger.Warn("node agent: files not written by Portcullis left alone; pulls they configure do not go through the mirror", "files", res.Foreign)
		}
		*lastForeign = slices.Clone(res.Foreign)
	}
	if err != nil {
		logger.Error("node agent: sync failed", "err", err)
	}
}
