package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadDestinations(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "destinations.json")
	doc := `{"internal": {"bucket": "exports", "prefix": "exports/", "region": "us-east-1"},
	         "sfmc": {"bucket": "sfmc-drop", "role_arn": "arn:aws:iam::222233334444:role/sfmc-export", "external_id": "x-1"}}`
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(kv ...string) func(string) string {
		m := map[string]string{"EXPORT_QUEUE_URL": "q", "MONGO_URI": "m", "EXPORT_BUCKET": "exports"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}

	// Without a file: "internal" alone, from EXPORT_BUCKET and EXPORT_KEY_PREFIX.
	c, err := loadConfig(env())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Destinations) != 1 || c.Destinations["internal"].Bucket != "exports" || c.Destinations["internal"].Prefix != "exports/" {
		t.Errorf("destinations = %+v", c.Destinations)
	}
	// From the file, or the same JSON in EXPORT_DESTINATIONS.
	for _, e := range []func(string) string{env("EXPORT_DESTINATIONS_FILE", file), env("EXPORT_DESTINATIONS", doc)} {
		c, err := loadConfig(e)
		if err != nil {
			t.Fatal(err)
		}
		if c.Destinations["sfmc"].ExternalID != "x-1" || c.Destinations["internal"].Region != "us-east-1" || len(c.Destinations) != 2 {
			t.Errorf("destinations = %+v", c.Destinations)
		}
	}
	// Problems are configuration errors, reported with the rest.
	for _, tc := range []struct {
		env  func(string) string
		want []string
	}{
		{env("EXPORT_DESTINATIONS_FILE", file, "EXPORT_DESTINATIONS", doc), []string{"not both"}},
		{env("EXPORT_DESTINATIONS_FILE", file+".missing"), []string{"EXPORT_DESTINATIONS_FILE", "no such file"}},
		{env("EXPORT_DESTINATIONS_FILE", file, "EXPORT_BUCKET", "other"), []string{`bucket "exports" differs from EXPORT_BUCKET "other"`}},
		{env("EXPORT_DESTINATIONS_FILE", file, "EXPORT_KEY_PREFIX", "x/"), []string{`prefix "exports/" differs from EXPORT_KEY_PREFIX "x/"`}},
		{env("EXPORT_DESTINATIONS", `{"x": {"bucket": "abc", "role_arn": "nope"}}`, "GZIP_LEVEL", "11"), []string{`destination "x": role_arn`, "GZIP_LEVEL"}},
		{env("EXPORT_KEY_PREFIX", "a b/"), []string{"EXPORT_KEY_PREFIX"}},
	} {
		_, err := loadConfig(tc.env)
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v does not say %q", err, want)
			}
		}
	}
}
