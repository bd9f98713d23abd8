package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]zerolog.Level{
		"": zerolog.InfoLevel, "info": zerolog.InfoLevel, "INFO": zerolog.InfoLevel, " debug ": zerolog.DebugLevel,
		"warn": zerolog.WarnLevel, "warning": zerolog.WarnLevel, "error": zerolog.ErrorLevel,
	} {
		got, err := ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"verbose", "trace", "1"} {
		if _, err := ParseLevel(bad); err == nil || !strings.Contains(err.Error(), "LOG_LEVEL") {
			t.Errorf("ParseLevel(%q) = %v, want an error naming LOG_LEVEL", bad, err)
		}
	}
}

// The patterns of the debug npm package, as the ops team writes them.
func TestMatcher(t *testing.T) {
	for _, c := range []struct {
		patterns string
		match    []string
		noMatch  []string
	}{
		{"", nil, []string{"titan:worker", "titan"}},
		{"titan*", []string{"titan:worker", "titan:export", "titan"}, []string{"other:titan"}},
		{"titan:worker", []string{"titan:worker"}, []string{"titan:export", "titan:worker2"}},
		{"titan:worker,titan:export", []string{"titan:worker", "titan:export"}, []string{"titan:main"}},
		{"titan:worker titan:export", []string{"titan:worker", "titan:export"}, []string{"titan:main"}},
		{"titan*,-titan:worker", []string{"titan:export", "titan:main"}, []string{"titan:worker"}},
		{"*,-titan:main", []string{"titan:worker", "anything"}, []string{"titan:main"}},
		{"-titan:worker,titan*", []string{"titan:export"}, []string{"titan:worker"}},
		{"titan:*:x", []string{"titan:a:x", "titan::x"}, []string{"titan:a:y"}},
		{"titan.worker", []string{"titan.worker"}, []string{"titanxworker"}}, // not a regexp
		{",,-,", nil, []string{"titan:worker"}},
	} {
		m := NewMatcher(c.patterns)
		for _, name := range c.match {
			if !m.Match(name) {
				t.Errorf("DEBUG=%q does not match %q, want it to", c.patterns, name)
			}
		}
		for _, name := range c.noMatch {
			if m.Match(name) {
				t.Errorf("DEBUG=%q matches %q, want it not to", c.patterns, name)
			}
		}
	}
}

// DEBUG='titan*' as the operations document writes it, quotes included (docker --env-file
// keeps them), turns on the debug lines of every component of the service.
func TestMatcherQuotedAsInTheOperationsDocument(t *testing.T) {
	components := []string{"titan:main", "titan:worker", "titan:export", "titan:queues", "titan:outbox"}
	for _, v := range []string{"titan*", "'titan*'", `"titan*"`, " 'titan*' ", "'titan*,-titan:queues'"} {
		m := NewMatcher(v)
		for _, c := range components {
			want := !(strings.Contains(v, "-titan:queues") && c == "titan:queues")
			if got := m.Match(c); got != want {
				t.Errorf("DEBUG=%s: Match(%q) = %v, want %v", v, c, got, want)
			}
		}
	}
	// Only one matching pair is removed: an unbalanced quote stays part of the pattern.
	for _, v := range []string{"'titan*", "titan*'", `'titan*"`} {
		if NewMatcher(v).Match("titan:export") {
			t.Errorf("DEBUG=%s matches titan:export; an unbalanced quote must not be dropped", v)
		}
	}

	var buf bytes.Buffer
	logs, err := New(&buf, "info", "'titan*'")
	if err != nil {
		t.Fatal(err)
	}
	l := logs.For("titan:export")
	l.Debug().Msg("d")
	if ls := parseLines(t, buf.String()); len(ls) != 1 || ls[0]["level"] != "debug" {
		t.Errorf("LOG_LEVEL=info DEBUG='titan*': titan:export wrote %q, want one debug line", buf.String())
	}
}

type line map[string]any

func parseLines(t *testing.T, out string) []line {
	t.Helper()
	var lines []line
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var v line
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("not a JSON line: %q: %v", l, err)
		}
		lines = append(lines, v)
	}
	return lines
}

// LOG_LEVEL sets every component's level; DEBUG adds debug lines for matching components only,
// whatever LOG_LEVEL says.
func TestLevelsAndDebugPatterns(t *testing.T) {
	for _, c := range []struct {
		level, debug string
		// want is, per component, the levels of the lines that appear (of debug, info, warn).
		want map[string]string
	}{
		{"info", "", map[string]string{"titan:worker": "info warn", "titan:export": "info warn"}},
		{"warn", "", map[string]string{"titan:worker": "warn", "titan:export": "warn"}},
		{"error", "", map[string]string{"titan:worker": "", "titan:export": ""}},
		{"debug", "", map[string]string{"titan:worker": "debug info warn", "titan:export": "debug info warn"}},
		{"info", "titan*", map[string]string{"titan:worker": "debug info warn", "titan:export": "debug info warn"}},
		{"warn", "titan*", map[string]string{"titan:worker": "debug warn", "titan:export": "debug warn"}},
		{"info", "titan:worker", map[string]string{"titan:worker": "debug info warn", "titan:export": "info warn"}},
		{"info", "titan*,-titan:worker", map[string]string{"titan:worker": "info warn", "titan:export": "debug info warn"}},
	} {
		var buf bytes.Buffer
		logs, err := New(&buf, c.level, c.debug)
		if err != nil {
			t.Fatal(err)
		}
		for comp := range c.want {
			l := logs.For(comp)
			l.Debug().Msg("d")
			l.Info().Msg("i")
			l.Warn().Msg("w")
		}
		got := map[string][]string{}
		for _, l := range parseLines(t, buf.String()) {
			got[l["component"].(string)] = append(got[l["component"].(string)], l["level"].(string))
		}
		for comp, want := range c.want {
			if g := strings.Join(got[comp], " "); g != want {
				t.Errorf("LOG_LEVEL=%s DEBUG=%q: %s logged levels %q, want %q", c.level, c.debug, comp, g, want)
			}
		}
	}
	if _, err := New(&bytes.Buffer{}, "loud", ""); err == nil {
		t.Error("New accepted LOG_LEVEL=loud")
	}
}

// Lines are JSON with the fields Kibana queries use: time (RFC 3339), level, message,
// component, and durations in milliseconds.
func TestLineFields(t *testing.T) {
	var buf bytes.Buffer
	logs, err := New(&buf, "info", "")
	if err != nil {
		t.Fatal(err)
	}
	l := logs.For("titan:export")
	l.Info().Str("export_id", "e-1").Int64("duration", 5100).Msg("export succeeded")
	ls := parseLines(t, buf.String())
	if len(ls) != 1 {
		t.Fatalf("%d lines, want 1", len(ls))
	}
	got := ls[0]
	for k, want := range map[string]any{"level": "info", "message": "export succeeded", "component": "titan:export", "export_id": "e-1", "duration": 5100.0} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	if ts, ok := got["time"].(string); !ok || !strings.Contains(ts, "T") {
		t.Errorf("time = %v, want an RFC 3339 time", got["time"])
	}
}

// An e-mail address or a URL's credentials never reach the log, whichever field carries them,
// also when an error quotes a value cut short.
func TestRedactsEmailsAndCredentials(t *testing.T) {
	var buf bytes.Buffer
	logs, err := New(&buf, "info", "")
	if err != nil {
		t.Fatal(err)
	}
	log := logs.For("titan:worker")
	log.Error().Err(errors.New(`invalid job message: field "export_id": "jane.doe+vip@example.co.uk" must be 1-128 characters`)).Msg("permanent failure")
	log.Error().Err(errors.New(`field "kind": "a.very.long.local.part.of.an.address@verif..." is not a kind name`)).Msg("permanent failure")
	log.Warn().Err(errors.New(`mongo: connect: mongodb://exporter:s3cr3t-Pa55@db.internal:27017/titan: timeout`)).Msg("retry")
	log.Info().Str("unknown_field", "john@example.org").Msg("field name")
	out := buf.String()
	for _, secret := range []string{"jane.doe", "example.co.uk", "a.very.long.local.part", "@verif", "s3cr3t-Pa55", "exporter:", "john@example.org"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{`\"[redacted-email]\" must be`, `\"[redacted-email]...\" is not`, "mongodb://[redacted]@db.internal:27017/titan", `"unknown_field":"[redacted-email]"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	parseLines(t, out) // still valid JSON

	// Lines without '@' pass through untouched.
	in := []byte(`{"level":"info","message":"export succeeded","key":"exports/registrations/c/e.csv.gz"}` + "\n")
	if got := Redact(in); !bytes.Equal(got, in) {
		t.Errorf("Redact changed a line without '@': %s", got)
	}
}
