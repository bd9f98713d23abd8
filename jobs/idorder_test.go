package jobs_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
)

// mixedIDs are _ids of every type FerretDB stores as an _id (it refuses NaN, infinities,
// decimal128, symbol, undefined, DBPointer, JavaScript, MinKey and MaxKey values, and like
// MongoDB arrays and regexes as an _id), several per bracket, inserted out of order.
func mixedIDs() []any {
	oid1 := bson.NewObjectIDFromTimestamp(time.Unix(1_700_000_000, 0))
	oid2 := bson.NewObjectIDFromTimestamp(time.Unix(1_800_000_000, 0))
	return []any{
		"b", int32(3), oid2, 2.5, bson.Binary{Data: []byte{2}}, int64(10), true, nil, "",
		bson.NewDateTimeFromTime(time.Unix(2000, 0)), bson.D{{Key: "x", Value: int32(2)}}, int32(-7), oid1,
		bson.Timestamp{T: 5, I: 1}, "a", -1.5, false, bson.Binary{Data: []byte{1}}, int64(-1 << 40),
		bson.NewDateTimeFromTime(time.Unix(-2000, 0)), bson.D{{Key: "x", Value: int32(1)}}, bson.Timestamp{T: 1, I: 9},
		3.5, int32(4), "ab", bson.Binary{Subtype: 4, Data: bytes.Repeat([]byte{0}, 16)},
	}
}

func insertIDs(t *testing.T, coll *mongo.Collection, ids []any) {
	t.Helper()
	for _, id := range ids {
		if _, err := coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: id}}); err != nil {
			t.Fatalf("insert _id %v: %v", id, err)
		}
	}
}

// sortedIDs returns the _ids matched by filter, sorted by _id.
func sortedIDs(t *testing.T, coll *mongo.Collection, filter any) []bson.RawValue {
	t.Helper()
	cur, err := coll.Find(context.Background(), filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		t.Fatalf("find %v: %v", filter, err)
	}
	defer cur.Close(context.Background())
	var ids []bson.RawValue
	for cur.Next(context.Background()) {
		v := cur.Current.Lookup("_id")
		ids = append(ids, bson.RawValue{Type: v.Type, Value: append([]byte(nil), v.Value...)})
	}
	if err := cur.Err(); err != nil {
		t.Fatalf("find %v: %v", filter, err)
	}
	return ids
}

func sameIDs(a, b []bson.RawValue) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

func rawOf(t *testing.T, v any) bson.RawValue {
	t.Helper()
	typ, data, err := bson.MarshalValue(v)
	if err != nil {
		t.Fatal(err)
	}
	return bson.RawValue{Type: typ, Value: data}
}

// For every document v of a collection with _ids of mixed types, AfterID(v) matches the
// documents after v in the collection's own _id order, and UpToID(v) the ones up to v.
func TestAfterIDAndUpToIDFollowTheIDOrder(t *testing.T) {
	t.Parallel()
	coll := stacktest.New(t).NewDatabase(t).Collection("ids")
	insertIDs(t, coll, mixedIDs())
	all := sortedIDs(t, coll, bson.D{})
	if len(all) != len(mixedIDs()) {
		t.Fatalf("the collection holds %d documents, want %d", len(all), len(mixedIDs()))
	}
	for i := 1; i < len(all); i++ {
		if jobs.IDRank(all[i-1].Type) > jobs.IDRank(all[i].Type) {
			t.Errorf("the server sorts %v before %v, IDRank says otherwise", all[i-1], all[i])
		}
	}
	for i, v := range all {
		if got := sortedIDs(t, coll, jobs.AfterID(v)); !sameIDs(got, all[i+1:]) {
			t.Errorf("AfterID(%v) = %v, want %v (filter %v)", v, got, all[i+1:], jobs.AfterID(v))
		}
		if got := sortedIDs(t, coll, jobs.UpToID(v)); !sameIDs(got, all[:i+1]) {
			t.Errorf("UpToID(%v) = %v, want %v (filter %v)", v, got, all[:i+1], jobs.UpToID(v))
		}
	}

	// Values FerretDB cannot hold (so they sort before or after every document; NaN before
	// every other number): their filters send no such value.
	firstNumber := 0
	for jobs.IDRank(all[firstNumber].Type) < jobs.IDRank(bson.TypeDouble) {
		firstNumber++
	}
	for _, c := range []struct {
		name        string
		v           bson.RawValue
		after, upTo []bson.RawValue
	}{
		{"MinKey", bson.RawValue{Type: bson.TypeMinKey}, all, nil},
		{"MaxKey", bson.RawValue{Type: bson.TypeMaxKey}, nil, all},
		{"NaN", rawOf(t, math.NaN()), all[firstNumber:], all[:firstNumber]},
	} {
		if got := sortedIDs(t, coll, jobs.AfterID(c.v)); !sameIDs(got, c.after) {
			t.Errorf("AfterID(%s) = %v, want %v (filter %v)", c.name, got, c.after, jobs.AfterID(c.v))
		}
		if got := sortedIDs(t, coll, jobs.UpToID(c.v)); !sameIDs(got, c.upTo) {
			t.Errorf("UpToID(%s) = %v, want %v (filter %v)", c.name, got, c.upTo, jobs.UpToID(c.v))
		}
	}
	// A value that is not in the collection splits it where the sort would put it.
	between := rawOf(t, 3.25)
	split := 0
	for ; split < len(all); split++ {
		if n, ok := all[split].AsFloat64OK(); ok && n > 3.25 || jobs.IDRank(all[split].Type) > jobs.IDRank(bson.TypeDouble) {
			break
		}
	}
	if got := sortedIDs(t, coll, jobs.AfterID(between)); !sameIDs(got, all[split:]) {
		t.Errorf("AfterID(3.25) = %v, want %v", got, all[split:])
	}
	if got := sortedIDs(t, coll, jobs.UpToID(between)); !sameIDs(got, all[:split]) {
		t.Errorf("UpToID(3.25) = %v, want %v", got, all[:split])
	}
}

// The filters' shapes: a range only when no type ranks after (before) the value's bracket.
func TestIDFilterShapes(t *testing.T) {
	three := rawOf(t, int32(3))
	got := fmt.Sprint(jobs.AfterID(three))
	want := `{"$or":[{"_id":{"$gt":{"$numberInt":"3"}}},{"_id":{"$type":["string","object","array","binData","objectId","bool","date","timestamp","regex"]}}]}`
	if got != want {
		t.Errorf("AfterID(3) = %s, want %s", got, want)
	}
	re := rawOf(t, bson.Regex{Pattern: "a"})
	if got := fmt.Sprint(jobs.AfterID(re)); strings.Contains(got, "$or") || !strings.Contains(got, "$gt") {
		t.Errorf("AfterID(/a/) = %s, want only a range", got)
	}
	null := bson.RawValue{Type: bson.TypeNull}
	if got, want := fmt.Sprint(jobs.UpToID(null)), `{"_id":{"$type":["null"]}}`; got != want {
		t.Errorf("UpToID(null) = %s, want %s", got, want)
	}
	if !jobs.SameIDBracket(three, rawOf(t, 9.0)) {
		t.Error("int32 and double are not in one bracket")
	}
	if jobs.SameIDBracket(three, rawOf(t, "3")) {
		t.Error("int32 and string are in one bracket")
	}
	if jobs.IDRank(bson.TypeNull) >= jobs.IDRank(bson.TypeInt64) || jobs.IDRank(bson.TypeObjectID) >= jobs.IDRank(bson.TypeBoolean) ||
		jobs.IDRank(bson.TypeDateTime) >= jobs.IDRank(bson.TypeTimestamp) || jobs.IDRank(bson.TypeSymbol) != jobs.IDRank(bson.TypeString) {
		t.Error("IDRank breaks MongoDB's order")
	}
}

// A cursor that ends early in the numbers of a collection whose _ids are numbers and then
// strings is not taken for the end of the export: the documents left are of another type
// than the last _id read ({_id: {$gt: 10}} matches no string).
func TestCursorThatEndsEarlyBeforeAnotherIDType(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	db := e.st.NewDatabase(t)
	ds := fixtures.Generate(uint64(time.Now().UnixNano()), fixtures.Campaigns[:1], 40)
	for i, d := range ds.Registrations {
		doc := d.(bson.D)
		for j := range doc {
			if doc[j].Key == "_id" {
				if i < 20 {
					doc[j].Value = int32(i) // 0..19, then strings
				} else {
					doc[j].Value = fmt.Sprintf("r%03d", i)
				}
			}
		}
	}
	if _, err := db.Collection("registrations").InsertMany(context.Background(), ds.Registrations); err != nil {
		t.Fatal(err)
	}
	run := func(id string, wrap func(jobs.Source) jobs.Source) (string, error) {
		return runCampaignExport(t, e, db, id, wrap)
	}
	for _, n := range []int{0, 10, 20} { // none read, inside the numbers, right after the last number
		key, err := run(fmt.Sprintf("early%d", n), func(s jobs.Source) jobs.Source { return &quietEnd{Source: s, n: n} })
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("ended after %d rows", n)) {
			t.Fatalf("Run with a cursor that stops after %d numeric _ids of 20, before 20 string _ids = %v, want the early end reported", n, err)
		}
		e.nothingLeft(t, key)
	}
	if _, err := run("whole", nil); err != nil {
		t.Fatalf("Run reading every document = %v", err)
	}
}
