package jobs

import (
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// _id order across BSON types.
//
// An export reads its query sorted by _id ascending. The sort compares values of different
// types by a rank of their type (MongoDB's canonicalizeBSONType; the manual's
// "Comparison/Sort Order"), but a range query is type-bracketed: {_id: {$gt: 3}} matches
// only numbers above 3, not the strings, ObjectIds, ... that sort after every number.
// AfterID and UpToID add the types ranked after (before) a value's bracket to the range, so
// that they match exactly the documents the sort puts after (at or before) the value.
//
// Ranks, lowest first (canonicalizeBSONType's values):
//
//	 -1  MinKey
//	  0  Undefined
//	  5  Null
//	 10  Double, Int32, Int64, Decimal128 (one bracket: numbers compare by value)
//	 15  String, Symbol
//	 20  Object (embedded document)
//	 25  Array
//	 30  Binary
//	 35  ObjectId
//	 40  Boolean
//	 45  Date
//	 47  Timestamp
//	 50  Regex
//	 55  DBPointer
//	 60  JavaScript
//	 65  JavaScript with scope
//	127  MaxKey
//
// A type not in this table ranks with MaxKey.
var idRanks = map[bson.Type]int{
	bson.TypeMinKey:           -1,
	bson.TypeUndefined:        0,
	bson.TypeNull:             5,
	bson.TypeDouble:           10,
	bson.TypeInt32:            10,
	bson.TypeInt64:            10,
	bson.TypeDecimal128:       10,
	bson.TypeString:           15,
	bson.TypeSymbol:           15,
	bson.TypeEmbeddedDocument: 20,
	bson.TypeArray:            25,
	bson.TypeBinary:           30,
	bson.TypeObjectID:         35,
	bson.TypeBoolean:          40,
	bson.TypeDateTime:         45,
	bson.TypeTimestamp:        47,
	bson.TypeRegex:            50,
	bson.TypeDBPointer:        55,
	bson.TypeJavaScript:       60,
	bson.TypeCodeWithScope:    65,
	bson.TypeMaxKey:           127,
}

// idTypeAliases are the $type names of the $type lists, with their ranks. They are the
// aliases FerretDB 1.24 accepts in $type ("number" is double, int and long there, and also
// decimal on MongoDB). FerretDB refuses minKey, undefined, symbol, dbPointer, javascript,
// javascriptWithScope, decimal and maxKey (by name and by code) and stores none of them as
// an _id; MongoDB refuses undefined, array and regex as an _id. So on MongoDB a document
// whose _id is a MinKey, MaxKey, Symbol, DBPointer or JavaScript value is outside the
// $type lists (a Symbol is still inside a string range, the same bracket).
var idTypeAliases = []struct {
	alias string
	rank  int
}{
	{"null", 5},
	{"number", 10},
	{"string", 15},
	{"object", 20},
	{"array", 25},
	{"binData", 30},
	{"objectId", 35},
	{"bool", 40},
	{"date", 45},
	{"timestamp", 47},
	{"regex", 50},
}

// IDRank returns the rank of type t in the _id sort order: values of types with a lower
// rank sort first; values of types with the same rank (one bracket) compare by value.
func IDRank(t bson.Type) int {
	if r, ok := idRanks[t]; ok {
		return r
	}
	return idRanks[bson.TypeMaxKey]
}

// SameIDBracket tells whether a and b are in the same bracket, that is whether a range on
// one can match the other. A caller that knows the highest _id of its export sends the
// plain {_id: {$gt: a}} (which uses the _id index best) when it is in a's bracket.
func SameIDBracket(a, b bson.RawValue) bool {
	return IDRank(a.Type) == IDRank(b.Type)
}

// AfterID returns a filter matching the documents whose _id sorts strictly after v:
// {$or: [{_id: {$gt: v}}, {_id: {$type: [the types ranked after v's]}}]}, or only the range
// when no type ranks after v's.
func AfterID(v bson.RawValue) bson.D {
	r := IDRank(v.Type)
	var or bson.A
	switch {
	case singleValued(v.Type):
		// Every value of the bracket equals v (MinKey, MaxKey, Undefined, Null): none of it
		// is after v. No range: MinKey, MaxKey and undefined values are not sent in a query.
	case isNaN(v):
		// NaN sorts before every other number but matches no $gt: every other number (no
		// NaN matches $gte) is after it. A NaN value is not sent: FerretDB drops the
		// connection.
		or = append(or, idCond("$gte", math.Inf(-1)))
	default:
		or = append(or, idCond("$gt", v))
	}
	if types := typesWhere(func(tr int) bool { return tr > r }); len(types) > 0 {
		or = append(or, idCond("$type", types))
	}
	return orOf(or)
}

// UpToID returns a filter matching the documents whose _id sorts at or before v:
// {$or: [{_id: {$lte: v}}, {_id: {$type: [the types ranked before v's]}}]}.
func UpToID(v bson.RawValue) bson.D {
	r := IDRank(v.Type)
	var or bson.A
	switch {
	case singleValued(v.Type):
		// The whole bracket is v: its types go to the $type list.
		r++
	case isNaN(v):
		or = append(or, idNaN())
	case r == IDRank(bson.TypeDouble):
		// A NaN sorts before every other number but matches no $lte of one.
		or = append(or, idCond("$lte", v), idNaN())
	default:
		or = append(or, idCond("$lte", v))
	}
	if types := typesWhere(func(tr int) bool { return tr < r }); len(types) > 0 {
		or = append(or, idCond("$type", types))
	}
	return orOf(or)
}

// idNaN matches a NaN _id: the number that is not $gte -Infinity. (A NaN value is not sent
// in a query: FerretDB drops the connection.)
func idNaN() bson.D {
	return bson.D{{Key: "_id", Value: bson.D{
		{Key: "$type", Value: "number"},
		{Key: "$not", Value: bson.D{{Key: "$gte", Value: math.Inf(-1)}}},
	}}}
}

func idCond(op string, v any) bson.D {
	return bson.D{{Key: "_id", Value: bson.D{{Key: op, Value: v}}}}
}

func orOf(or bson.A) bson.D {
	switch len(or) {
	case 0:
		return idCond("$in", bson.A{}) // matches nothing
	case 1:
		return or[0].(bson.D)
	}
	return bson.D{{Key: "$or", Value: or}}
}

// typesWhere lists the $type aliases of the types whose rank satisfies keep.
func typesWhere(keep func(rank int) bool) bson.A {
	var a bson.A
	for _, t := range idTypeAliases {
		if keep(t.rank) {
			a = append(a, t.alias)
		}
	}
	return a
}

func singleValued(t bson.Type) bool {
	switch t {
	case bson.TypeMinKey, bson.TypeMaxKey, bson.TypeUndefined, bson.TypeNull:
		return true
	}
	return false
}

func isNaN(v bson.RawValue) bool {
	if f, ok := v.DoubleOK(); ok {
		return math.IsNaN(f)
	}
	if d, ok := v.Decimal128OK(); ok {
		return d.IsNaN()
	}
	return false
}
