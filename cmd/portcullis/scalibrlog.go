package main

import (
	"context"
	"fmt"
	"log/slog"

	scalibrlog "github.com/google/osv-scalibr/log"
)

// scalibrLogger routes osv-scalibr's package-level logger into ours, so the
// server's stderr stays one JSON line per event. Its info chatter is debug.
type scalibrLogger struct{ log *slog.Logger }

func useScalibrLogger(log *slog.Logger) {
	scalibrlog.SetLogger(scalibrLogger{log.With("component", "osv-scalibr")})
}

func (l scalibrLogger) emit(level slog.Level, msg string) {
	l.log.Log(context.Background(), level, msg)
}

func (l scalibrLogger) Errorf(format string, args ...any) {
	l.emit(slog.LevelError, fmt.Sprintf(format, args...))
}
func (l scalibrLogger) Warnf(format string, args ...any) {
	l.emit(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (l scalibrLogger) Infof(format string, args ...any) {
	l.emit(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (l scalibrLogger) Debugf(format string, args ...any) {
	l.emit(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (l scalibrLogger) Error(args ...any) { l.emit(slog.LevelError, fmt.Sprint(args...)) }
func (l scalibrLogger) Warn(args ...any)  { l.emit(slog.LevelWarn, fmt.Sprint(args...)) }
func (l scalibrLogger) Info(args ...any)  { l.emit(slog.LevelDebug, fmt.Sprint(args...)) }
func (l scalibrLogger) Debug(args ...any) { l.emit(slog.LevelDebug, fmt.Sprint(args...)) }
