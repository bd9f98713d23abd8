package jobs

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/verifiedfan/export-service/jobs/encode"
)

func TestKeyTemplateRender(t *testing.T) {
	t.Parallel()
	vars := KeyVars{ExportID: "sfmc-2026-11-26.coldplay_1", Kind: "registrations", Campaign: "cmp-coldplay-spheres", Format: encode.FormatCSV,
		Date: time.Date(2026, 11, 26, 23, 30, 0, 0, time.FixedZone("EST", -5*3600))}
	for _, tc := range []struct {
		tmpl, prefix, want string
	}{
		{"", "exports/", "exports/registrations/cmp-coldplay-spheres/sfmc-2026-11-26.coldplay_1.csv.gz"},
		{DefaultKeyTemplate, "", "registrations/cmp-coldplay-spheres/sfmc-2026-11-26.coldplay_1.csv.gz"},
		// The date is the UTC date of the request time.
		{"dt={date}/{kind}-{export_id}.{format}.gz", "verifiedfan/", "verifiedfan/dt=2026-11-27/registrations-sfmc-2026-11-26.coldplay_1.csv.gz"},
		{"{export_id}", "a/b-", "a/b-sfmc-2026-11-26.coldplay_1"},
	} {
		tmpl := KeyTemplate{}
		if tc.tmpl != "" {
			tmpl = MustParseKeyTemplate(tc.tmpl)
		}
		got, err := tmpl.Render(tc.prefix, vars)
		if err != nil || got != tc.want {
			t.Errorf("%q.Render(%q) = %q, %v; want %q", tc.tmpl, tc.prefix, got, err, tc.want)
		}
	}
	// A kind without a campaign renders "all".
	got, err := KeyTemplate{}.Render("", KeyVars{ExportID: "e1", Kind: "k", Format: encode.FormatNDJSON})
	if err != nil || got != "k/all/e1.ndjson.gz" {
		t.Errorf("no campaign: %q, %v", got, err)
	}
}

// Every way a value could steer a key elsewhere is refused, with a permanent error naming the
// variable, not rewritten into something that merely looks safe.
func TestKeyTemplateRefusesEscapes(t *testing.T) {
	t.Parallel()
	base := KeyVars{ExportID: "e1", Kind: "registrations", Campaign: "c1", Format: encode.FormatCSV, Date: time.Now()}
	for _, tc := range []struct {
		name    string
		mutate  func(*KeyVars)
		wantVar string
	}{
		{"parent folder in a variable", func(v *KeyVars) { v.Campaign = "../tmol-drop" }, "{campaign}"},
		{"dot-dot alone", func(v *KeyVars) { v.Campaign = ".." }, "{campaign}"},
		{"dot-dot inside", func(v *KeyVars) { v.ExportID = "a..b" }, "{export_id}"},
		{"slash adds a folder", func(v *KeyVars) { v.Campaign = "a/b" }, "{campaign}"},
		{"absolute", func(v *KeyVars) { v.ExportID = "/etc/passwd" }, "{export_id}"},
		{"backslash", func(v *KeyVars) { v.Campaign = `a\..\b` }, "{campaign}"},
		{"leading dot", func(v *KeyVars) { v.ExportID = ".hidden" }, "{export_id}"},
		{"space", func(v *KeyVars) { v.Campaign = "a b" }, "{campaign}"},
		{"percent encoding", func(v *KeyVars) { v.Campaign = "%2e%2e" }, "{campaign}"},
		{"newline", func(v *KeyVars) { v.Kind = "k\n" }, "{kind}"},
		{"unicode", func(v *KeyVars) { v.Campaign = "café" }, "{campaign}"},
		{"too long", func(v *KeyVars) { v.ExportID = strings.Repeat("a", 129) }, "{export_id}"},
	} {
		v := base
		tc.mutate(&v)
		key, err := KeyTemplate{}.Render("exports/", v)
		if err == nil {
			t.Errorf("%s: rendered %q", tc.name, key)
			continue
		}
		if reason, ok := IsPermanent(err); !ok || reason != "invalid_key" {
			t.Errorf("%s: error %v is not permanent invalid_key", tc.name, err)
		}
		if !strings.Contains(err.Error(), tc.wantVar) {
			t.Errorf("%s: error %q does not name %s", tc.name, err, tc.wantVar)
		}
	}
	// A prefix that escapes is refused too.
	for _, prefix := range []string{"/abs/", "../up/", "a/../b/", "a//b/", "a\\b/", "./"} {
		if key, err := (KeyTemplate{}).Render(prefix, base); err == nil {
			t.Errorf("prefix %q: rendered %q", prefix, key)
		}
	}
	// {date} without a request time has no value: an error, never an empty folder.
	noDate := base
	noDate.Date = time.Time{}
	key, err := MustParseKeyTemplate("{date}/{export_id}").Render("", noDate)
	if reason, _ := IsPermanent(err); err == nil || reason != "invalid_key" || !errors.Is(err, ErrNoRequestTime) || !strings.Contains(err.Error(), "{date}") {
		t.Errorf("no date: rendered %q, %v; want a permanent invalid_key error naming {date}, wrapping ErrNoRequestTime", key, err)
	}
}

// A data key can never be another export's manifest key (<key>.manifest.json): a template
// whose every key ends like a manifest is refused when parsed (at startup), and any other
// rendering that would is refused when rendered.
func TestKeyTemplateNeverRendersAManifestKey(t *testing.T) {
	t.Parallel()
	for _, tmpl := range []string{"{export_id}.manifest.json", "dt={date}/{kind}/{export_id}.manifest.json", "{export_id}.csv.manifest.json"} {
		if _, err := ParseKeyTemplate(tmpl); err == nil || !strings.Contains(err.Error(), ManifestSuffix) {
			t.Errorf("ParseKeyTemplate(%q) = %v, want an error naming %s", tmpl, err, ManifestSuffix)
		}
	}
	templates := []string{DefaultKeyTemplate, "{export_id}", "{export_id}.json", "{export_id}manifest.json", "{export_id}.manifest",
		"{kind}/{export_id}", "{export_id}/{campaign}", "x.manifest.json/{export_id}", "{export_id}.manifest.json.gz"}
	ids := []string{"x", "x.manifest.json", "x.manifest", "x.", "x.manifest.json.manifest.json", "manifest.json", "x.csv.gz.manifest.json"}
	campaigns := []string{"c", "c.manifest.json"}
	type rendered struct{ tmpl, id, campaign, key string }
	var keys []rendered
	for _, src := range templates {
		tmpl := MustParseKeyTemplate(src)
		for _, id := range ids {
			for _, c := range campaigns {
				key, err := tmpl.Render("p/", KeyVars{ExportID: id, Kind: "k", Campaign: c, Format: encode.FormatCSV, Date: time.Now()})
				if err != nil {
					if reason, _ := IsPermanent(err); reason != "invalid_key" || !strings.Contains(err.Error(), ManifestSuffix) {
						t.Errorf("%q with id %q, campaign %q: %v, want only the manifest-key refusal", src, id, c, err)
					}
					continue
				}
				keys = append(keys, rendered{src, id, c, key})
			}
		}
	}
	for _, a := range keys {
		if strings.HasSuffix(a.key, ManifestSuffix) {
			t.Errorf("%q with id %q rendered %q, a manifest key", a.tmpl, a.id, a.key)
		}
		for _, b := range keys {
			if a.key == ManifestKey(b.key) {
				t.Errorf("the data key of %s (template %q) is the manifest key of %s (template %q): %q", a.id, a.tmpl, b.id, b.tmpl, a.key)
			}
		}
	}
	// Some of each template's renderings succeed: the refusal is of the key, not the template.
	if len(keys) < len(templates) {
		t.Errorf("only %d keys rendered", len(keys))
	}
}

func TestParseKeyTemplateRefuses(t *testing.T) {
	t.Parallel()
	for _, tmpl := range []string{
		"",
		"{kind}/{campaign}.csv",          // no {export_id}: two exports would share a key
		"/{export_id}",                   // absolute
		"../{export_id}",                 // climbs out of the prefix
		"a/../{export_id}",               // climbs inside
		"a//{export_id}",                 // empty folder
		"./{export_id}",                  // "." folder
		"{export_id}/",                   // ends with a folder
		"{bucket}/{export_id}",           // unknown variable
		"{export_id",                     // unclosed
		"{export_id}}",                   // stray brace
		"exports/{export_id} copy",       // space
		"exports\\{export_id}",           // backslash
		"s3://other-bucket/{export_id}",  // a bucket in disguise
		"{export_id}?versionId=1",        // query text
		"{export_id}#frag",               // fragment
		"{kind}/{EXPORT_ID}/{export_id}", // variables are lower case
	} {
		if _, err := ParseKeyTemplate(tmpl); err == nil {
			t.Errorf("ParseKeyTemplate(%q) accepted", tmpl)
		}
	}
	for _, tmpl := range []string{DefaultKeyTemplate, "dt={date}/{kind}/{export_id}.{format}.gz", "{export_id}", "a.b/c_d-e/{campaign}/{export_id}.gz"} {
		if _, err := ParseKeyTemplate(tmpl); err != nil {
			t.Errorf("ParseKeyTemplate(%q): %v", tmpl, err)
		}
	}
}

func TestValidateKeyPrefix(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "exports/", "verifiedfan/", "a/b/", "exports-", "dt=x/"} {
		if err := ValidateKeyPrefix(ok); err != nil {
			t.Errorf("ValidateKeyPrefix(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"/", "/exports/", "../", "a/../", "a//", "./", "a b/", "a\\b"} {
		if err := ValidateKeyPrefix(bad); err == nil {
			t.Errorf("ValidateKeyPrefix(%q) accepted", bad)
		}
	}
}
