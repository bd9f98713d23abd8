package encode_test

import (
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/jobs/encode"
)

// The tests of this package that run the encoders on the export kinds' columns (here and in
// golden_test.go) are in package encode_test: they import jobs, which package encode must not.

// Encoding a document allocates nothing.
func TestEncodersDoNotAllocate(t *testing.T) {
	reg := jobs.DefaultRegistry()
	doc := encode.MustRaw(t, bson.D{
		{Key: "_id", Value: bson.NewObjectID()}, {Key: "campaign_id", Value: "c"},
		{Key: "fan", Value: bson.D{{Key: "email", Value: "a@example.com"}, {Key: "first_name", Value: "=Zoë, \"x\""}, {Key: "phone", Value: "+15555550123"}}},
		{Key: "status", Value: "verified"}, {Key: "marketing_opt_in", Value: true}, {Key: "score", Value: int32(5)},
		{Key: "tags", Value: bson.A{"vip", "app"}}, {Key: "created_at", Value: time.Now()},
	})
	plan, err := reg.Plan(jobs.Message{Kind: "registrations", Format: encode.FormatCSV, Params: []byte(`{"campaign_id":"c"}`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []struct {
		f encode.Format
		o encode.Options
	}{{encode.FormatCSV, encode.Options{}}, {encode.FormatCSV, encode.Options{Delimiter: ';'}}, {encode.FormatNDJSON, encode.Options{}}, {encode.FormatNDJSON, encode.Options{NDJSONMode: encode.NDJSONRelaxedExtJSON}}} {
		enc, err := encode.New(opts.f, discard{}, plan.Columns, opts.o)
		if err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { _ = enc.Encode(doc) }); n != 0 {
			t.Errorf("%s %+v: %v allocations per document", opts.f, opts.o, n)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
