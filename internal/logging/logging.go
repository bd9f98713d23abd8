// Package logging builds the service's zerolog loggers: JSON lines on stdout with time, level
// and message, a global level from LOG_LEVEL, and debug output for components whose name
// matches the DEBUG patterns (the convention of the "debug" npm package the ops team knows:
// DEBUG='titan*', 'titan:worker,titan:sink', '*,-titan:http').
package logging

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Logs hands out one logger per component.
type Logs struct {
	root  zerolog.Logger
	level zerolog.Level
	debug *Matcher
}

// New returns loggers writing to w at level (debug, info, warn, error), with debug enabled for
// components matching the debug patterns.
func New(w io.Writer, level, debug string) (*Logs, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	zerolog.DurationFieldUnit = time.Millisecond
	return &Logs{
		root:  zerolog.New(w).With().Timestamp().Logger(),
		level: lvl,
		debug: NewMatcher(debug),
	}, nil
}

// ParseLevel parses a LOG_LEVEL value.
func ParseLevel(s string) (zerolog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "info":
		return zerolog.InfoLevel, nil
	case "debug":
		return zerolog.DebugLevel, nil
	case "warn", "warning":
		return zerolog.WarnLevel, nil
	case "error":
		return zerolog.ErrorLevel, nil
	}
	return zerolog.InfoLevel, fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", s)
}

// For returns the logger of a component, named like "titan:worker". Its lines carry the
// component in the "component" field.
func (l *Logs) For(component string) zerolog.Logger {
	lvl := l.level
	if l.debug.Match(component) && lvl > zerolog.DebugLevel {
		lvl = zerolog.DebugLevel
	}
	return l.root.Level(lvl).With().Str("component", component).Logger()
}

// Matcher matches component names against DEBUG patterns: names separated by commas or
// spaces, '*' matching any run of characters, and a leading '-' excluding what it matches.
type Matcher struct {
	include, exclude []*regexp.Regexp
}

// NewMatcher compiles DEBUG patterns.
func NewMatcher(patterns string) *Matcher {
	m := &Matcher{}
	for _, p := range strings.FieldsFunc(patterns, func(r rune) bool { return r == ',' || r == ' ' }) {
		neg := strings.HasPrefix(p, "-")
		p = strings.TrimPrefix(p, "-")
		if p == "" {
			continue
		}
		re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(p), `\*`, ".*") + "$")
		if neg {
			m.exclude = append(m.exclude, re)
		} else {
			m.include = append(m.include, re)
		}
	}
	return m
}

// Match reports whether debug output is on for name.
func (m *Matcher) Match(name string) bool {
	for _, re := range m.exclude {
		if re.MatchString(name) {
			return false
		}
	}
	for _, re := range m.include {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}
