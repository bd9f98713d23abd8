package jobs

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/verifiedfan/export-service/internal/clip"
	"github.com/verifiedfan/export-service/jobs/encode"
)

// DefaultKeyTemplate is the object key template of a destination that configures none. It
// is the key layout of the first releases: <prefix><kind>/<campaign>/<export_id>.<format>.gz.
const DefaultKeyTemplate = "{kind}/{campaign}/{export_id}.{format}.gz"

// ManifestSuffix is appended to an export's object key to name its manifest.
const ManifestSuffix = ".manifest.json"

// MaxKeyBytes is S3's limit on an object key, less room for the manifest suffix.
const MaxKeyBytes = 1024 - len(ManifestSuffix)

// Key template variables.
const (
	KeyVarExportID = "export_id"
	KeyVarKind     = "kind"
	KeyVarCampaign = "campaign"
	KeyVarDate     = "date"
	KeyVarFormat   = "format"
)

var keyVars = map[string]bool{KeyVarExportID: true, KeyVarKind: true, KeyVarCampaign: true, KeyVarDate: true, KeyVarFormat: true}

var (
	// Literal text of a template and key prefixes: S3's "safe" characters without the ones
	// shells and URLs treat specially, plus / as the folder separator and = for
	// partition-style folders (dt={date}/).
	keyLiteralPattern = regexp.MustCompile(`^[A-Za-z0-9._=/-]*$`)
	// A variable's value is one path segment: it can never add a folder or climb out of one.
	keyValuePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// KeyTemplate is a parsed object key template such as "{kind}/{campaign}/{export_id}.{format}.gz".
// Variables: {export_id}, {kind}, {campaign} (the kind's campaign, "all" when it has none),
// {date} (YYYY-MM-DD, UTC, of the job's request time) and {format} (csv, ndjson). The zero
// value is DefaultKeyTemplate.
type KeyTemplate struct {
	src   string
	parts []keyPart
}

type keyPart struct {
	lit string // literal text when v is ""
	v   string // variable name
}

// ErrNoRequestTime is the error (wrapped, permanent "invalid_key") of rendering a template that
// uses {date} without a request time: the date is never guessed, and the key never falls back
// to another template, since either would write the export somewhere other than where every
// other delivery of it writes.
var ErrNoRequestTime = errors.New("the job has no request time")

// ParseKeyTemplate parses and checks a key template. A template must contain {export_id} (so
// that two exports can never share a key), must not start with /, and its literal text may use
// only A-Z a-z 0-9 . _ - = and /, with no empty, "." or ".." folder. A template whose keys
// would all end in ManifestSuffix is refused: each one would be another export's manifest key.
func ParseKeyTemplate(s string) (KeyTemplate, error) {
	t := KeyTemplate{src: s}
	if s == "" {
		return t, errors.New("key template is empty")
	}
	rest := s
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			t.parts = append(t.parts, keyPart{lit: rest})
			break
		}
		if open > 0 {
			t.parts = append(t.parts, keyPart{lit: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return t, fmt.Errorf("key template %q: unclosed {", s)
		}
		name := rest[open+1 : open+end]
		if !keyVars[name] {
			return t, fmt.Errorf("key template %q: unknown variable {%s} (known: {export_id}, {kind}, {campaign}, {date}, {format})", s, name)
		}
		t.parts = append(t.parts, keyPart{v: name})
		rest = rest[open+end+1:]
	}
	var exportID bool
	for _, p := range t.parts {
		if p.v == KeyVarExportID {
			exportID = true
		}
		if p.v == "" && (!keyLiteralPattern.MatchString(p.lit) || strings.ContainsAny(p.lit, "{}")) {
			return t, fmt.Errorf("key template %q: literal %q may use only A-Z a-z 0-9 . _ - = /", s, p.lit)
		}
	}
	if !exportID {
		return t, fmt.Errorf("key template %q must contain {export_id}: every export needs a key of its own", s)
	}
	if strings.HasPrefix(s, "/") {
		return t, fmt.Errorf("key template %q must not start with /", s)
	}
	if last := t.parts[len(t.parts)-1]; last.v == "" && strings.HasSuffix(last.lit, ManifestSuffix) {
		return t, fmt.Errorf("key template %q must not end with %q: every key would be the manifest key of another export", s, ManifestSuffix)
	}
	// Variables render to one non-empty segment without "..": checking the template with a
	// stand-in value finds empty, "." and ".." folders in the literal text.
	probe := t.render(func(string) string { return "x" })
	if err := checkKey(probe); err != nil {
		return t, fmt.Errorf("key template %q: %w", s, err)
	}
	return t, nil
}

// MustParseKeyTemplate is ParseKeyTemplate for templates known to be valid; it panics otherwise.
func MustParseKeyTemplate(s string) KeyTemplate {
	t, err := ParseKeyTemplate(s)
	if err != nil {
		panic(err)
	}
	return t
}

var defaultKeyTemplate = MustParseKeyTemplate(DefaultKeyTemplate)

func (t KeyTemplate) orDefault() KeyTemplate {
	if t.parts == nil {
		return defaultKeyTemplate
	}
	return t
}

// String returns the template's source text.
func (t KeyTemplate) String() string { return t.orDefault().src }

// Uses reports whether the template contains the variable name.
func (t KeyTemplate) Uses(name string) bool {
	for _, p := range t.orDefault().parts {
		if p.v == name {
			return true
		}
	}
	return false
}

// KeyVars are the values of a template's variables for one export.
type KeyVars struct {
	ExportID string
	Kind     string
	Campaign string
	Format   encode.Format
	// Date is the time the export was requested; only its UTC date is used.
	Date time.Time
}

// Render builds the object key prefix + template for vars. Every variable's value must be a
// single path segment of A-Z a-z 0-9 . _ - starting with a letter or digit and without "..";
// a value that is not is refused, never rewritten, so that a key cannot be steered elsewhere.
// Errors are permanent (reason "invalid_key"). A template using {date} needs a non-zero Date
// (ErrNoRequestTime otherwise). A key ending in ManifestSuffix is refused: it would be the
// manifest key of the export whose key is the same without the suffix (a template like
// "{export_id}" and the export ids "x" and "x.manifest.json").
func (t KeyTemplate) Render(prefix string, vars KeyVars) (string, error) {
	t = t.orDefault()
	if err := ValidateKeyPrefix(prefix); err != nil {
		return "", Permanent(ReasonInvalidKey, err)
	}
	campaign := vars.Campaign
	if campaign == "" {
		campaign = "all"
	}
	values := map[string]string{
		KeyVarExportID: vars.ExportID,
		KeyVarKind:     vars.Kind,
		KeyVarCampaign: campaign,
		KeyVarFormat:   vars.Format.Extension(),
	}
	if !vars.Date.IsZero() {
		values[KeyVarDate] = vars.Date.UTC().Format(time.DateOnly)
	}
	var errs []error
	for _, p := range t.parts {
		if p.v == "" {
			continue
		}
		v, ok := values[p.v]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("key variable {%s}: no value: %w", p.v, ErrNoRequestTime))
		case !keyValuePattern.MatchString(v) || strings.Contains(v, ".."):
			errs = append(errs, fmt.Errorf("key variable {%s}: %q cannot be part of an object key: want 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit, without \"..\"", p.v, clip.String(v, 40)))
		}
	}
	if len(errs) > 0 {
		return "", Permanent(ReasonInvalidKey, errors.Join(errs...))
	}
	key := prefix + t.render(func(name string) string { return values[name] })
	if err := checkKey(key); err != nil {
		return "", Permanent(ReasonInvalidKey, err)
	}
	return key, nil
}

func (t KeyTemplate) render(value func(string) string) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.v == "" {
			b.WriteString(p.lit)
		} else {
			b.WriteString(value(p.v))
		}
	}
	return b.String()
}

// checkKey is the last line of defence: whatever built it, a key is relative, has no empty,
// "." or ".." folder, uses only the safe characters, fits S3's limit with its manifest and is
// never a manifest's key.
func checkKey(key string) error {
	switch {
	case key == "":
		return errors.New("object key is empty")
	case strings.HasSuffix(key, ManifestSuffix):
		return fmt.Errorf("object key %q ends with %q: it would be the manifest of the export at %q", clip.String(key, 80), ManifestSuffix, clip.String(strings.TrimSuffix(key, ManifestSuffix), 80))
	case len(key) > MaxKeyBytes:
		return fmt.Errorf("object key is %d bytes, more than %d", len(key), MaxKeyBytes)
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("object key %q must not start with /", clip.String(key, 80))
	case strings.HasSuffix(key, "/"):
		return fmt.Errorf("object key %q must not end with /", clip.String(key, 80))
	case !keyLiteralPattern.MatchString(key):
		return fmt.Errorf("object key %q has characters outside A-Z a-z 0-9 . _ - = /", clip.String(key, 80))
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("object key %q has an empty, \".\" or \"..\" folder", clip.String(key, 80))
		}
	}
	return nil
}

// ValidateKeyPrefix checks a destination's key prefix: empty, or relative text of
// A-Z a-z 0-9 . _ - = / without empty, "." or ".." folders (usually ending with /).
func ValidateKeyPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if strings.HasPrefix(prefix, "/") || !keyLiteralPattern.MatchString(prefix) {
		return fmt.Errorf("key prefix %q must not start with / and may use only A-Z a-z 0-9 . _ - = /", clip.String(prefix, 80))
	}
	segs := strings.Split(prefix, "/")
	if strings.HasSuffix(prefix, "/") {
		segs = segs[:len(segs)-1]
	}
	for _, seg := range segs {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("key prefix %q has an empty, \".\" or \"..\" folder", clip.String(prefix, 80))
		}
	}
	return nil
}
