package sink

import (
	"strings"
	"testing"
	"time"
)

// The shape infra/terraform writes to /etc/vf-export/destinations.json (local.destinations:
// var.destinations without null fields, plus "internal"), with prod1's values.
const terraformDestinations = `{
  "internal": {"bucket": "vf-export-prod1-us-east-1", "prefix": "exports/", "region": "us-east-1"},
  "sfmc": {"bucket": "sfmc-drop", "prefix": "verifiedfan/", "region": "us-east-1",
           "role_arn": "arn:aws:iam::555566667777:role/sfmc-export", "external_id": "vf-export-prod1",
           "expected_bucket_owner": "555566667777", "sse": "aws:kms"},
  "tmol": {"bucket": "tmol-drop", "prefix": "verifiedfan/", "region": "us-east-1",
           "role_arn": "arn:aws:iam::666677778888:role/tmol-export", "external_id": "vf-export-prod1",
           "expected_bucket_owner": "666677778888"}
}`

func TestParseDestinationsTerraformShape(t *testing.T) {
	t.Parallel()
	dests, err := ParseDestinations([]byte(terraformDestinations))
	if err != nil {
		t.Fatal(err)
	}
	sfmc := dests["sfmc"]
	if sfmc.Bucket != "sfmc-drop" || sfmc.RoleARN != "arn:aws:iam::555566667777:role/sfmc-export" || sfmc.ExternalID != "vf-export-prod1" || sfmc.SSE != "aws:kms" {
		t.Errorf("sfmc = %+v", sfmc)
	}
	// Defaults of a role destination.
	if sfmc.SessionName != "vf-export-sfmc" || sfmc.SessionDuration.Duration() != time.Hour || sfmc.RefreshBefore.Duration() != 5*time.Minute || sfmc.KeyTemplate != "{kind}/{campaign}/{export_id}.{format}.gz" || sfmc.Checksum != "CRC32C" {
		t.Errorf("sfmc defaults = %+v", sfmc)
	}
	if in := dests["internal"]; in.RoleARN != "" || in.SessionName != "" || in.Prefix != "exports/" {
		t.Errorf("internal = %+v", in)
	}
	// Durations: a Go duration or seconds.
	dests, err = ParseDestinations([]byte(`{"x": {"bucket": "abc", "role_arn": "arn:aws:iam::123456789012:role/r", "session_duration": 3600, "refresh_before": "10m", "key_template": "dt={date}/{export_id}.gz", "storage_class": "INTELLIGENT_TIERING", "sse": "AES256"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if x := dests["x"]; x.SessionDuration.Duration() != time.Hour || x.RefreshBefore.Duration() != 10*time.Minute {
		t.Errorf("x = %+v", x)
	}
}

// Every problem of every destination is reported at once, naming the destination and field.
func TestParseDestinationsRefuses(t *testing.T) {
	t.Parallel()
	_, err := ParseDestinations([]byte(`{
	  "a": {"bucket": "Not_A_Bucket", "prefix": "../up/", "region": "mars", "external_id": "x1"},
	  "b": {"bucket": "bbb", "role_arn": "arn:aws:iam::1:role/r", "session_duration": "5m", "sse": "rot13", "kms_key_id": "k"},
	  "c": {"bucket": "ccc", "role_arn": "arn:aws:iam::123456789012:role/r", "refresh_before": "2h", "key_template": "/{kind}/{campaign}.gz", "storage_class": "CHEAP", "expected_bucket_owner": "me", "checksum": "MD5"},
	  "Bad Name": {"bucket": "ddd"},
	  "e": {}
	}`))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`destination "a"`, `bucket: "Not_A_Bucket"`, `prefix:`, `region: "mars"`, `external_id: only with role_arn`,
		`destination "b"`, `role_arn: "arn:aws:iam::1:role/r"`, `session_duration: 5m0s is outside`, `sse: "rot13"`, `kms_key_id: only with sse`,
		`destination "c"`, `refresh_before: 2h0m0s`, `key_template:`, `storage_class: "CHEAP"`, `expected_bucket_owner: "me"`, `checksum: "MD5"`,
		`destination "Bad Name"`, `destination "e": bucket: required`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	// A misspelt field is an error, not a silently ignored setting.
	if _, err := ParseDestinations([]byte(`{"sfmc": {"bucket": "sfmc-drop", "externalid": "x"}}`)); err == nil || !strings.Contains(err.Error(), "externalid") {
		t.Errorf("unknown field: %v", err)
	}
	for _, doc := range []string{``, `[]`, `null`, `{"a": {"bucket": "abc"}} {}`, `{"a": "abc"}`} {
		if _, err := ParseDestinations([]byte(doc)); err == nil {
			t.Errorf("%q accepted", doc)
		}
	}
}
