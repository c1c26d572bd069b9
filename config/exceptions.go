package config

import "time"

// Exceptions bounds the operators' exceptions (POST /api/v1/exceptions).
type Exceptions struct {
	// MaxDuration is how far ahead an exception may expire: every
	// exception ends, and is granted again on the record if still needed.
	MaxDuration Duration `yaml:"max_duration"`
}

// DefaultExceptionMaxDuration is exceptions.max_duration's default.
const DefaultExceptionMaxDuration = 90 * 24 * time.Hour

func (c *Config) finishExceptions(add func(format string, args ...any)) {
	if c.Exceptions.MaxDuration <= 0 {
		add("exceptions.max_duration must be positive (default 90d)")
	}
}
