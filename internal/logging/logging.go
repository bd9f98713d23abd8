// Package logging builds the service's zerolog loggers: JSON lines on stdout with time, level
// and message, a global level from LOG_LEVEL, and debug output for components whose name
// matches the DEBUG patterns (the convention of the "debug" npm package the ops team knows:
// DEBUG='titan*', 'titan:worker,titan:sink', '*,-titan:http').
//
// Every line passes through Redact on its way out: whatever a component logs, an e-mail
// address or the credentials of a URL never reach the log pipeline.
package logging

import (
	"bytes"
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
		root:  zerolog.New(redactingWriter{w}).With().Timestamp().Logger(),
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
//
// DEBUG adds a matching component's debug lines to what LOG_LEVEL lets through, as the debug
// package's output comes on top of the application's log level: with LOG_LEVEL=warn and
// DEBUG='titan*' a component writes debug, warn and error lines, not info lines.
func (l *Logs) For(component string) zerolog.Logger {
	root := l.root.Level(l.level)
	if l.debug.Match(component) && l.level > zerolog.DebugLevel {
		root = l.root.Level(zerolog.DebugLevel)
		if l.level > zerolog.InfoLevel {
			root = root.Hook(dropBelow{debug: true, min: l.level})
		}
	}
	return root.With().Str("component", component).Logger()
}

// dropBelow discards lines under min, except debug lines when debug is set.
type dropBelow struct {
	debug bool
	min   zerolog.Level
}

func (d dropBelow) Run(e *zerolog.Event, level zerolog.Level, _ string) {
	if level < d.min && !(d.debug && level == zerolog.DebugLevel) {
		e.Discard()
	}
}

// Matcher matches component names against DEBUG patterns: names separated by commas or
// spaces, '*' matching any run of characters, and a leading '-' excluding what it matches.
type Matcher struct {
	include, exclude []*regexp.Regexp
}

// NewMatcher compiles DEBUG patterns. A value wrapped in one pair of quotes is unwrapped:
// the operations document writes DEBUG='titan*', and docker --env-file and systemd's
// EnvironmentFile= variants pass such quotes on literally.
func NewMatcher(patterns string) *Matcher {
	m := &Matcher{}
	patterns = unquote(strings.TrimSpace(patterns))
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

// unquote removes one pair of matching single or double quotes around s.
func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
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

var (
	// urlUserinfo matches the user:password@ part of a URL (mongodb://user:secret@host).
	urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/\s"'@\\]+@`)
	// emailAddress matches an e-mail address, also one cut short by truncation
	// ("jane.doe@exam..."): a message value quoted in an error, a misplaced field name.
	emailAddress = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*`)
)

// Redact replaces e-mail addresses with "[redacted-email]" and the user and password of URLs
// with "[redacted]". Logs never need them, and error messages can carry them: the job message
// decoder quotes (up to 40 characters of) the values it refuses, and a producer may put an
// address where an id belongs.
func Redact(line []byte) []byte {
	if bytes.IndexByte(line, '@') < 0 {
		return line
	}
	line = urlUserinfo.ReplaceAll(line, []byte("${1}[redacted]@"))
	return emailAddress.ReplaceAll(line, []byte("[redacted-email]"))
}

// redactingWriter applies Redact to each line zerolog writes (one Write per line).
type redactingWriter struct{ w io.Writer }

func (r redactingWriter) Write(p []byte) (int, error) {
	if _, err := r.w.Write(Redact(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}
