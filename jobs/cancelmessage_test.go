package jobs

import (
	"strings"
	"testing"
)

// cancelBody is a valid cancel message with the given members replaced (name, raw JSON value;
// an empty value removes the member).
func cancelBody(kv ...string) string {
	members := [][2]string{{"version", `1`}, {"type", `"cancel_export"`}, {"export_id", `"e-1"`}, {"requested_by", `"crm"`}, {"reason", `"wrong campaign"`}}
	for i := 0; i < len(kv); i += 2 {
		found := false
		for j := range members {
			if members[j][0] == kv[i] {
				members[j][1], found = kv[i+1], true
			}
		}
		if !found {
			members = append(members, [2]string{kv[i], kv[i+1]})
		}
	}
	var parts []string
	for _, m := range members {
		if m[1] != "" {
			parts = append(parts, `"`+m[0]+`":`+m[1])
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

var (
	validCancelMessages = []string{
		cancelBody(),
		cancelBody("requested_by", ""),
		cancelBody("reason", ""),
		cancelBody("requested_by", "", "reason", ""),
		cancelBody("reason", `""`),
		cancelBody("reason", `"`+strings.Repeat("é", MaxCancelReason)+`"`),
		cancelBody("version", `1.0`),
		cancelBody("export_id", `"`+strings.Repeat("a", 128)+`"`),
		`{"export_id":"x","type":"cancel_export","version":1}`,
	}
	invalidCancelMessages = []string{
		``,
		`null`,
		`{}`,
		cancelBody() + `}`,
		cancelBody("version", ""),
		cancelBody("version", `2`),
		cancelBody("type", ""),
		cancelBody("type", `"export_segment"`),
		cancelBody("type", `"Cancel_Export"`),
		cancelBody("export_id", ""),
		cancelBody("export_id", `null`),
		cancelBody("export_id", `"a/b"`),
		cancelBody("export_id", `"`+strings.Repeat("a", 129)+`"`),
		cancelBody("requested_by", `""`),
		cancelBody("requested_by", `7`),
		cancelBody("reason", `null`),
		cancelBody("reason", `"`+strings.Repeat("x", MaxCancelReason+1)+`"`),
		cancelBody("kind", `"registrations"`),
		cancelBody("Reason", `"x"`),
	}
)

// The cancel schema and DecodeCancel accept and refuse the same messages.
func TestCancelSchemaAgreesWithDecoder(t *testing.T) {
	root := loadSchemaFile(t, "cancel-message.schema.json")
	for _, body := range validCancelMessages {
		if p := validateAgainst(t, root, []byte(body)); p != nil {
			t.Errorf("schema refuses valid %.200q: %v", body, p)
		}
		if _, err := DecodeCancel([]byte(body)); err != nil {
			t.Errorf("decoder refuses valid %.200q: %v", body, err)
		}
		if !IsCancelMessage([]byte(body)) || IsSegmentMessage([]byte(body)) {
			t.Errorf("%.200q is not told apart as a cancel message", body)
		}
	}
	for _, body := range invalidCancelMessages {
		if p := validateAgainst(t, root, []byte(body)); p == nil {
			t.Errorf("schema accepts invalid %.200q", body)
		}
		_, err := DecodeCancel([]byte(body))
		if err == nil {
			t.Errorf("decoder accepts invalid %.200q", body)
			continue
		}
		if _, ok := IsPermanent(err); !ok {
			t.Errorf("decoder's refusal of %.200q is not permanent: %v", body, err)
		}
	}
}

// The decoder names every problem at once, and returns the export id it could read.
func TestDecodeCancelReportsEveryProblem(t *testing.T) {
	m, err := DecodeCancel([]byte(cancelBody("version", `3`, "requested_by", `"-x"`, "reason", `"`+strings.Repeat("x", 501)+`"`)))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"version", "requested_by", "reason"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if m.ExportID != "e-1" {
		t.Errorf("export id %q, want e-1 with the error", m.ExportID)
	}
	if reason, _ := IsPermanent(err); reason != ReasonInvalidMessage {
		t.Errorf("reason %q", reason)
	}
}

// Encode writes what DecodeCancel reads back, and refuses what it would refuse.
func TestCancelEncodeRoundTrip(t *testing.T) {
	in := CancelMessage{ExportID: "e-9", RequestedBy: "ops@example", Reason: "partner asked"}
	b, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeCancel(b)
	if err != nil {
		t.Fatal(err)
	}
	in.Version, in.Type = CurrentVersion, CancelMessageType
	if out != in {
		t.Errorf("round trip: %+v, want %+v", out, in)
	}
	if _, err := (CancelMessage{ExportID: "a/b"}).Encode(); err == nil || !strings.Contains(err.Error(), "export_id") {
		t.Errorf("Encode of an invalid export id: %v", err)
	}
	// A job message is not a cancel message, and is decoded as a job message.
	if IsCancelMessage([]byte(`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c"}}`)) {
		t.Error("a job message taken for a cancel message")
	}
}
