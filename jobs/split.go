package jobs

import (
	"context"
	"errors"
	"fmt"
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Splitting an export into segments.
//
// A large export may be cut into K segments over disjoint _id ranges of its query, run by
// different workers and stitched into one object. SplitPoints finds the K-1 bounds; the
// segment between two bounds is queried with SegmentFilter, sorted by _id like the whole
// export, and the segments read in order give exactly the whole query's rows in its order.
//
// How the bounds are found, by server:
//
//   - MongoDB: $bucketAuto on _id after the export's $match. It sorts the matching _ids once
//     and cuts them into equal buckets, so the bounds follow the query, not the collection.
//     (splitVector, the command behind chunk splits, walks the _id index of the whole
//     collection and knows nothing of the filter: a selective query would get segments of
//     very different sizes.)
//   - FerretDB 1.24 implements neither splitVector (CommandNotFound) nor $bucketAuto,
//     $bucket, $sample, $setWindowFields or $push (NotImplemented). It has countDocuments,
//     count, estimatedDocumentCount, collStats/$collStats and find with sort, skip and limit,
//     so the bounds are found by walking: one sorted query of the _ids alone, keeping the _id
//     at the end of each segment's share. One query (FerretDB scans the whole collection for
//     each), where a skip query per bound would cost K-1 scans.

// Split methods (SplitPlan.Method).
const (
	SplitByBucketAuto = "bucketAuto"
	SplitByWalk       = "walk"
	// SplitNone: one segment, nothing to find (k is 1 or the query has at most 1 row).
	SplitNone = "none"
)

// SplitPlan is how a query is cut into segments of about equal size.
type SplitPlan struct {
	// Rows is the number of documents matching the query (countDocuments) when it was split.
	Rows int64
	// Bounds are the segments' bounds, strictly increasing in the _id order: segment 0 is the
	// rows up to Bounds[0] (included), segment i the rows after Bounds[i-1] up to Bounds[i],
	// the last segment the rows after the last bound. No bound means one segment: the whole
	// query. There are at most min(K, Rows)-1 bounds, so no segment is empty (unless rows are
	// deleted meanwhile).
	Bounds []bson.RawValue
	// Method is how the bounds were found: SplitByBucketAuto, SplitByWalk or SplitNone.
	Method string
}

// Segments returns the number of segments of the plan: len(Bounds)+1.
func (p SplitPlan) Segments() int { return len(p.Bounds) + 1 }

// Segment returns segment i's bounds, for SegmentFilter: lo is nil for the first segment,
// hi nil for the last.
func (p SplitPlan) Segment(i int) (lo, hi *bson.RawValue) {
	if i > 0 {
		lo = &p.Bounds[i-1]
	}
	if i < len(p.Bounds) {
		hi = &p.Bounds[i]
	}
	return lo, hi
}

// SplitPoints cuts the query filter on coll, sorted by _id, into k segments of about
// Rows/k documents each: with $bucketAuto where the server has it (a segment may then be
// off by up to about k/2 documents, and there may be fewer segments when Rows is less than
// about 1.5k: MongoDB fills round(Rows/k) documents a bucket and the last takes the rest),
// else by walking the query's sorted _ids once (sizes within 1 document of Rows/k). Fewer than k
// segments when Rows < k. The plan is a snapshot: rows written after it fall into the
// segment of their _id, and every row is still in exactly one segment.
func SplitPoints(ctx context.Context, coll *mongo.Collection, filter bson.D, k int) (SplitPlan, error) {
	return splitPoints(ctx, coll, filter, k, -1, true)
}

// splitPoints is SplitPoints of a query of rows documents (counted when rows is negative).
func splitPoints(ctx context.Context, coll *mongo.Collection, filter bson.D, k int, rows int64, bucketAuto bool) (SplitPlan, error) {
	if k < 1 {
		return SplitPlan{}, fmt.Errorf("jobs: split %s into %d segments: want at least 1", coll.Name(), k)
	}
	if filter == nil {
		filter = bson.D{}
	}
	if rows < 0 {
		var err error
		if rows, err = coll.CountDocuments(ctx, filter); err != nil {
			return SplitPlan{}, fmt.Errorf("jobs: split %s: count: %w", coll.Name(), err)
		}
	}
	segments := int64(k)
	if rows < segments {
		segments = rows
	}
	if segments <= 1 {
		return SplitPlan{Rows: rows, Method: SplitNone}, nil
	}
	if bucketAuto {
		bounds, err := bucketAutoBounds(ctx, coll, filter, int(segments))
		switch {
		case err == nil:
			return SplitPlan{Rows: rows, Bounds: bounds, Method: SplitByBucketAuto}, nil
		case !unsupported(err):
			return SplitPlan{}, fmt.Errorf("jobs: split %s: $bucketAuto: %w", coll.Name(), err)
		}
	}
	bounds, err := walkBounds(ctx, coll, filter, rows, segments)
	if err != nil {
		return SplitPlan{}, fmt.Errorf("jobs: split %s: %w", coll.Name(), err)
	}
	return SplitPlan{Rows: rows, Bounds: bounds, Method: SplitByWalk}, nil
}

// bucketAutoBounds returns the highest _id of each bucket but the last of
// [{$match: filter}, {$project: {_id: 1}}, {$bucketAuto: {groupBy: "$_id", buckets: k}}].
// A bucket's _id.max is the next bucket's min (an exclusive bound), so each bucket also
// gives its $max _id (the accumulator compares across types in the sort's order).
func bucketAutoBounds(ctx context.Context, coll *mongo.Collection, filter bson.D, k int) ([]bson.RawValue, error) {
	pipeline := bson.A{
		bson.D{{Key: "$match", Value: filter}},
		bson.D{{Key: "$project", Value: bson.D{{Key: "_id", Value: 1}}}},
		bson.D{{Key: "$bucketAuto", Value: bson.D{
			{Key: "groupBy", Value: "$_id"},
			{Key: "buckets", Value: k},
			{Key: "output", Value: bson.D{
				{Key: "count", Value: bson.D{{Key: "$sum", Value: 1}}},
				{Key: "last", Value: bson.D{{Key: "$max", Value: "$_id"}}},
			}},
		}}},
	}
	cur, err := coll.Aggregate(ctx, pipeline, options.Aggregate().SetAllowDiskUse(true))
	if err != nil {
		return nil, err
	}
	var buckets []bson.Raw
	if err := cur.All(ctx, &buckets); err != nil {
		return nil, err
	}
	return boundsFromBuckets(buckets, k)
}

// boundsFromBuckets returns the "last" value of every bucket but the last, in the order
// $bucketAuto returns them (by _id).
func boundsFromBuckets(buckets []bson.Raw, k int) ([]bson.RawValue, error) {
	if len(buckets) > k {
		return nil, fmt.Errorf("%d buckets, asked for %d", len(buckets), k)
	}
	var bounds []bson.RawValue
	for i := 0; i+1 < len(buckets); i++ {
		last, err := buckets[i].LookupErr("last")
		if err != nil {
			return nil, fmt.Errorf("bucket %d has no last _id: %v", i, buckets[i])
		}
		bounds = append(bounds, copyRawValue(last))
	}
	return bounds, nil
}

// unsupported tells whether err says the server has no $bucketAuto: NotImplemented
// (FerretDB), MongoDB's "Unrecognized pipeline stage name", CommandNotFound or
// CommandNotSupported.
func unsupported(err error) bool {
	var se mongo.ServerError
	if !errors.As(err, &se) {
		return false
	}
	for _, code := range []int{238, 40324, 59, 115} {
		if se.HasErrorCode(code) {
			return true
		}
	}
	return false
}

// walkBounds finds segments-1 bounds in one pass over the query's _ids, in order: bound i is
// the _id at position floor(i*rows/segments)-1. One query whatever the number of segments
// (a skip query per bound costs a scan each on a server that cannot seek the _id index with
// the filter, as FerretDB). If the query ends early (rows were deleted), there are fewer
// bounds.
func walkBounds(ctx context.Context, coll *mongo.Collection, filter bson.D, rows, segments int64) ([]bson.RawValue, error) {
	cur, err := coll.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).
		SetProjection(bson.D{{Key: "_id", Value: 1}}).SetBatchSize(10_000))
	if err != nil {
		return nil, fmt.Errorf("walk the _ids: %w", err)
	}
	defer func() { _ = cur.Close(context.WithoutCancel(ctx)) }()
	var bounds []bson.RawValue
	var pos int64
	// floor(i*rows/segments) without overflow: rows = q*segments + r.
	end := func(i int64) int64 { return rows/segments*i + rows%segments*i/segments }
	for next := int64(1); next < segments && cur.Next(ctx); pos++ {
		if pos != end(next)-1 {
			continue
		}
		id, err := cur.Current.LookupErr("_id")
		if err != nil {
			return nil, fmt.Errorf("bound %d of %d: a document without _id", next, segments-1)
		}
		bounds = append(bounds, copyRawValue(id))
		next++
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("walk the _ids: %w", err)
	}
	return bounds, nil
}

func copyRawValue(v bson.RawValue) bson.RawValue {
	return bson.RawValue{Type: v.Type, Value: append([]byte(nil), v.Value...)}
}

// SegmentFilter returns the filter of the segment of the query filter after lo and up to hi
// (included) in the _id order: {$and: [filter, range]}, or the range alone when filter is
// empty. A nil lo is the start of the query, a nil hi its end.
//
// The range has the AfterID/UpToID forms at the open ends (the first and last segments take
// the types ranked before (after) their bound's bracket). Between two bounds of one bracket
// (the usual case: one _id type), it is the plain {_id: {$gt: lo, $lte: hi}}: every value
// between them in the sort's order is of that bracket, and that is one range scan of the _id
// index. Between bounds of two brackets it is one $or of disjoint ranges — the rest of lo's
// bracket, the brackets between (by $type), hi's bracket up to hi — equal to
// {$and: [AfterID(lo), UpToID(hi)]}, which a planner may serve from only one of its two $or's
// (every _id after lo, or every one up to hi). The $type lists have idorder.go's limits: a
// MinKey, MaxKey, Symbol, DBPointer or JavaScript _id (which FerretDB cannot store) is in
// no open-ended segment of another bracket.
func SegmentFilter(filter bson.D, lo, hi *bson.RawValue) bson.D {
	r := idRange(lo, hi)
	switch {
	case r == nil && filter == nil:
		return bson.D{}
	case r == nil:
		return filter
	case len(filter) == 0:
		return r
	}
	return bson.D{{Key: "$and", Value: bson.A{filter, r}}}
}

// idRange matches the _ids after lo and at or before hi in the sort's order; nil when both
// are nil (every _id).
func idRange(lo, hi *bson.RawValue) bson.D {
	switch {
	case lo == nil && hi == nil:
		return nil
	case hi == nil:
		return AfterID(*lo)
	case lo == nil:
		return UpToID(*hi)
	}
	rl, rh := IDRank(lo.Type), IDRank(hi.Type)
	if rl > rh {
		return orOf(nil) // hi sorts before lo: nothing
	}
	if rl == rh {
		switch {
		case singleValued(lo.Type) || isNaN(*hi):
			// Nothing of the bracket sorts after lo, or none up to hi (NaN is the lowest number).
			return orOf(nil)
		case isNaN(*lo):
			// Every number but NaN sorts after it (NaN is not sent: FerretDB drops the connection).
			return bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: math.Inf(-1)}, {Key: "$lte", Value: *hi}}}}
		}
		return bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: *lo}, {Key: "$lte", Value: *hi}}}}
	}
	// lo's bracket after lo ($gt is type-bracketed).
	var or bson.A
	switch {
	case singleValued(lo.Type):
	case isNaN(*lo):
		or = append(or, idCond("$gte", math.Inf(-1)))
	default:
		or = append(or, idCond("$gt", *lo))
	}
	// The brackets between, and hi's if hi is its only value (null).
	hiWhole := singleValued(hi.Type)
	if types := typesWhere(func(tr int) bool { return tr > rl && (tr < rh || hiWhole && tr == rh) }); len(types) > 0 {
		or = append(or, idCond("$type", types))
	}
	// hi's bracket up to hi ($lte is type-bracketed; NaN sorts before every other number).
	switch {
	case hiWhole:
	case isNaN(*hi):
		or = append(or, idNaN())
	case rh == IDRank(bson.TypeDouble):
		or = append(or, idCond("$lte", *hi), idNaN())
	default:
		or = append(or, idCond("$lte", *hi))
	}
	return orOf(or)
}
