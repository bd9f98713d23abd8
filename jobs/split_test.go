package jobs

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/stacktest"
)

// splitIDs returns the _ids matched by filter, sorted by _id.
func splitIDs(t *testing.T, coll *mongo.Collection, filter bson.D) []bson.RawValue {
	t.Helper()
	ctx := context.Background()
	cur, err := coll.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		t.Fatalf("find %v: %v", filter, err)
	}
	defer cur.Close(ctx)
	var ids []bson.RawValue
	for cur.Next(ctx) {
		ids = append(ids, copyRawValue(cur.Current.Lookup("_id")))
	}
	if err := cur.Err(); err != nil {
		t.Fatalf("find %v: %v", filter, err)
	}
	return ids
}

func splitSameIDs(a, b []bson.RawValue) bool {
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

// checkSegments queries every segment of plan and checks that they are not empty, that
// their sizes are within slack documents of Rows/segments and that, read in order, they are
// exactly whole (the query's sorted _ids).
func checkSegments(t *testing.T, coll *mongo.Collection, filter bson.D, plan SplitPlan, whole []bson.RawValue, slack float64) {
	t.Helper()
	n := plan.Segments()
	var got []bson.RawValue
	var sizes []int
	for i := range n {
		lo, hi := plan.Segment(i)
		seg := splitIDs(t, coll, SegmentFilter(filter, lo, hi))
		sizes = append(sizes, len(seg))
		got = append(got, seg...)
	}
	if !splitSameIDs(got, whole) {
		t.Fatalf("%s, %d bounds %v: the segments read %d rows %v, the query %d %v", plan.Method, len(plan.Bounds), plan.Bounds, len(got), got, len(whole), whole)
	}
	if len(whole) == 0 {
		return
	}
	mean := float64(len(whole)) / float64(n)
	for i, s := range sizes {
		if s == 0 || math.Abs(float64(s)-mean) > slack {
			t.Errorf("%s: segment %d of %d holds %d rows (sizes %v), want %.2f ± %.1f", plan.Method, i, n, s, sizes, mean, slack)
		}
	}
}

// A collection of mixed _id types: int32, int64 and double interleaved in one bracket,
// strings and ObjectIds; g is i%7.
func mixedSplitDocs(n int) []any {
	docs := make([]any, n)
	for i := range n {
		var id any
		switch i % 5 {
		case 0:
			id = int32(i)
		case 1:
			id = int64(-i) * 1_000_000_007
		case 2:
			id = float64(i) + 0.5
		case 3:
			id = fmt.Sprintf("%x", uint32(i)*2654435761)
		case 4:
			id = bson.NewObjectIDFromTimestamp(time.Unix(int64(1_700_000_000+i*7919%n), 0))
		}
		docs[i] = bson.D{{Key: "_id", Value: id}, {Key: "g", Value: int32(i % 7)}}
	}
	return docs
}

func intSplitDocs(n int) []any {
	docs := make([]any, n)
	for i := range n {
		docs[i] = bson.D{{Key: "_id", Value: int32(i * 3)}, {Key: "g", Value: int32(i % 7)}}
	}
	return docs
}

// For collections of 0, 1, 5, 1000 and 3000 documents (mixed _id types, a filter matching a
// subset), for k = 1..8, the segments of SplitPoints' plan read in order are exactly the
// query, none is empty and they are of about equal sizes.
func TestSplitPointsPartitionTheQuery(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	subset := bson.D{{Key: "g", Value: bson.D{{Key: "$ne", Value: int32(3)}}}}
	for _, c := range []struct {
		name   string
		docs   []any
		filter bson.D
	}{
		{"empty", nil, bson.D{}},
		{"one", intSplitDocs(1), bson.D{}},
		{"five", intSplitDocs(5), bson.D{}},
		{"five-filtered", intSplitDocs(5), subset},
		{"thousand", intSplitDocs(1000), nil},
		{"mixed-3000-filtered", mixedSplitDocs(3000), subset},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			coll := st.NewDatabase(t).Collection("c")
			docs := append([]any(nil), c.docs...)
			rand.Shuffle(len(docs), func(i, j int) { docs[i], docs[j] = docs[j], docs[i] })
			if len(docs) > 0 {
				if _, err := coll.InsertMany(ctx, docs); err != nil {
					t.Fatal(err)
				}
			}
			whole := splitIDs(t, coll, SegmentFilter(c.filter, nil, nil))
			if c.name == "mixed-3000-filtered" {
				t.Run("emulated-bucketAuto", func(t *testing.T) {
					t.Parallel()
					checkEmulatedBucketAuto(t, coll, c.filter, whole)
				})
			}
			for k := 1; k <= 8; k++ {
				t.Run(fmt.Sprintf("k=%d", k), func(t *testing.T) {
					t.Parallel()
					checkSplit(t, coll, c.filter, whole, k)
				})
			}
		})
	}
}

// checkSplit splits the query filter (whose sorted _ids are whole) into k segments.
func checkSplit(t *testing.T, coll *mongo.Collection, filter bson.D, whole []bson.RawValue, k int) {
	ctx := context.Background()
	plan, err := SplitPoints(ctx, coll, filter, k)
	if err != nil {
		t.Fatalf("k=%d: %v", k, err)
	}
	if plan.Rows != int64(len(whole)) {
		t.Fatalf("k=%d: Rows %d, the query has %d", k, plan.Rows, len(whole))
	}
	want := min(k, len(whole))
	if want <= 1 {
		if plan.Method != SplitNone || len(plan.Bounds) != 0 {
			t.Fatalf("k=%d, %d rows: method %s, bounds %v, want none", k, len(whole), plan.Method, plan.Bounds)
		}
		checkSegments(t, coll, filter, plan, whole, 0)
		return
	}
	switch plan.Method {
	case SplitByWalk:
		if plan.Segments() != want {
			t.Fatalf("k=%d, %d rows: %d segments, want %d", k, len(whole), plan.Segments(), want)
		}
		checkSegments(t, coll, filter, plan, whole, 1)
	case SplitByBucketAuto:
		checkSegments(t, coll, filter, plan, whole, float64(want)/2)
		// And the fallback, which this server does not need.
		skip, err := splitPoints(ctx, coll, filter, k, -1, false)
		if err != nil || skip.Method != SplitByWalk || skip.Segments() != want {
			t.Fatalf("k=%d: walk method: %v, %+v", k, err, skip)
		}
		checkSegments(t, coll, filter, skip, whole, 1)
	default:
		t.Fatalf("k=%d: method %q", k, plan.Method)
	}
	t.Logf("k=%d: %d rows, method %s, %d segments", k, plan.Rows, plan.Method, plan.Segments())
}

// checkEmulatedBucketAuto runs the $bucketAuto path's conversion on buckets made the way
// MongoDB makes them (DocumentSourceBucketAuto::populateBuckets with unique keys:
// round(n/k) documents a bucket, at least 1, the last bucket takes the rest), which FerretDB
// cannot: the bounds partition the query and the sizes are within k/2 of n/k.
func checkEmulatedBucketAuto(t *testing.T, coll *mongo.Collection, filter bson.D, whole []bson.RawValue) {
	t.Helper()
	for _, k := range []int{3, 8} {
		size := max(1, int(math.Round(float64(len(whole))/float64(k))))
		var buckets []bson.Raw
		for i, start := 0, 0; i < k && start < len(whole); i++ {
			end := min(start+size, len(whole))
			if i == k-1 {
				end = len(whole)
			}
			maxID := whole[len(whole)-1]
			if end < len(whole) {
				maxID = whole[end] // exclusive: the next bucket's min
			}
			doc, err := bson.Marshal(bson.D{
				{Key: "_id", Value: bson.D{{Key: "min", Value: whole[start]}, {Key: "max", Value: maxID}}},
				{Key: "count", Value: int32(end - start)},
				{Key: "last", Value: whole[end-1]},
			})
			if err != nil {
				t.Fatal(err)
			}
			buckets = append(buckets, doc)
			start = end
		}
		bounds, err := boundsFromBuckets(buckets, k)
		if err != nil {
			t.Fatal(err)
		}
		plan := SplitPlan{Rows: int64(len(whole)), Bounds: bounds, Method: SplitByBucketAuto + " (emulated)"}
		if plan.Segments() != len(buckets) {
			t.Fatalf("k=%d: %d segments from %d buckets", k, plan.Segments(), len(buckets))
		}
		checkSegments(t, coll, filter, plan, whole, float64(k)/2)
	}
	if _, err := boundsFromBuckets(make([]bson.Raw, 3), 2); err == nil {
		t.Error("3 buckets for k=2 are taken")
	}
}

// splitTypedIDs are _ids of every type FerretDB stores as an _id, several per bracket.
func splitTypedIDs() []any {
	oid1 := bson.NewObjectIDFromTimestamp(time.Unix(1_700_000_000, 0))
	oid2 := bson.NewObjectIDFromTimestamp(time.Unix(1_800_000_000, 0))
	return []any{
		"b", int32(3), oid2, 2.5, bson.Binary{Data: []byte{2}}, int64(10), true, nil, "",
		bson.NewDateTimeFromTime(time.Unix(2000, 0)), bson.D{{Key: "x", Value: int32(2)}}, int32(-7), oid1,
		bson.Timestamp{T: 5, I: 1}, "a", -1.5, false, bson.Binary{Data: []byte{1}}, int64(-1 << 40),
		bson.NewDateTimeFromTime(time.Unix(-2000, 0)), bson.D{{Key: "x", Value: int32(1)}}, bson.Timestamp{T: 1, I: 9},
		3.5, int32(4), "ab",
	}
}

// For every pair lo <= hi of _ids of every type, SegmentFilter(lo, hi) matches exactly the
// _ids after lo up to hi, with and without a filter; hi before lo matches nothing.
func TestSegmentFilterBetweenEveryPairOfIDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	coll := stacktest.New(t).NewDatabase(t).Collection("ids")
	for i, id := range splitTypedIDs() {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "odd", Value: i%2 == 1}}); err != nil {
			t.Fatalf("insert _id %v: %v", id, err)
		}
	}
	all := splitIDs(t, coll, bson.D{})
	odd := bson.D{{Key: "odd", Value: true}}
	allOdd := splitIDs(t, coll, odd)
	oddIn := func(ids []bson.RawValue) []bson.RawValue {
		var out []bson.RawValue
		for _, o := range allOdd {
			for _, id := range ids {
				if splitSameIDs([]bson.RawValue{o}, []bson.RawValue{id}) {
					out = append(out, o)
				}
			}
		}
		return out
	}
	check := func(lo, hi *bson.RawValue, want []bson.RawValue) {
		t.Helper()
		if got := splitIDs(t, coll, SegmentFilter(nil, lo, hi)); !splitSameIDs(got, want) {
			t.Errorf("SegmentFilter(%v, %v) = %v, want %v (filter %v)", lo, hi, got, want, SegmentFilter(nil, lo, hi))
		}
		if got, want := splitIDs(t, coll, SegmentFilter(odd, lo, hi)), oddIn(want); !splitSameIDs(got, want) {
			t.Errorf("SegmentFilter(odd, %v, %v) = %v, want %v", lo, hi, got, want)
		}
	}
	for i := range all {
		check(nil, &all[i], all[:i+1])
		check(&all[i], nil, all[i+1:])
		for j := i; j < len(all); j++ {
			check(&all[i], &all[j], all[i+1:j+1])
		}
	}
	check(&all[len(all)-1], &all[0], nil)
	check(&all[7], &all[3], nil)

	// NaN sorts before every other number; FerretDB stores none, so it is only a bound.
	nan, first, last := rawID(math.NaN()), 0, 0
	for IDRank(all[first].Type) < IDRank(bson.TypeDouble) {
		first++
	}
	for last = first; IDRank(all[last].Type) == IDRank(bson.TypeDouble); last++ {
	}
	check(&nan, &all[first+1], all[first:first+2])
	check(&nan, &all[last], all[first:last+1])
	check(&all[0], &nan, all[1:first])
	check(&all[first], &nan, nil)
}

func TestSegmentFilterShapes(t *testing.T) {
	f := bson.D{{Key: "g", Value: int32(1)}}
	lo, hi, s := rawID(int32(3)), rawID(9.5), rawID("x")
	minKey, null := bson.RawValue{Type: bson.TypeMinKey}, bson.RawValue{Type: bson.TypeNull}
	for _, c := range []struct {
		got  bson.D
		want string
	}{
		{SegmentFilter(f, nil, nil), `{"g":{"$numberInt":"1"}}`},
		{SegmentFilter(nil, nil, nil), `{}`},
		{SegmentFilter(f, &lo, &hi), `{"$and":[{"g":{"$numberInt":"1"}},{"_id":{"$gt":{"$numberInt":"3"},"$lte":{"$numberDouble":"9.5"}}}]}`},
		{SegmentFilter(bson.D{}, &lo, &hi), `{"_id":{"$gt":{"$numberInt":"3"},"$lte":{"$numberDouble":"9.5"}}}`},
		{SegmentFilter(nil, &lo, nil), fmt.Sprint(AfterID(lo))},
		{SegmentFilter(nil, nil, &s), fmt.Sprint(UpToID(s))},
		{SegmentFilter(nil, &lo, &s), `{"$or":[{"_id":{"$gt":{"$numberInt":"3"}}},{"_id":{"$lte":"x"}}]}`},
		{SegmentFilter(nil, &minKey, &null), `{"_id":{"$type":["null"]}}`},
		{SegmentFilter(nil, &null, &lo), `{"$or":[{"_id":{"$lte":{"$numberInt":"3"}}},{"_id":{"$type":"number","$not":{"$gte":{"$numberDouble":"-Infinity"}}}}]}`},
	} {
		if got := fmt.Sprint(c.got); got != c.want {
			t.Errorf("got %s, want %s", got, c.want)
		}
	}
}

func TestSplitPointsRejectsNoSegments(t *testing.T) {
	c := stacktest.New(t).NewDatabase(t).Collection("c")
	if _, err := SplitPoints(context.Background(), c, nil, 0); err == nil {
		t.Error("k=0 is taken")
	}
}
