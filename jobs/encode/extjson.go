package encode

import (
	"encoding/base64"
	"math"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// appendExtJSON appends v as MongoDB relaxed Extended JSON v2, the form mongoexport writes and
// mongoimport and every driver read back with types intact:
//
//   - string: string; int32, int64: number; finite double: number with a '.' or an exponent
//     (1.0, 1E+21), non-finite {"$numberDouble": "NaN" | "Infinity" | "-Infinity"}
//   - bool: true / false; null, missing: null
//   - ObjectId: {"$oid": "<24 hex>"}
//   - datetime from 1970 to 9999: {"$date": "<ISO 8601 UTC with milliseconds>"}, other years
//     {"$date": {"$numberLong": "<ms since epoch>"}}
//   - decimal128: {"$numberDecimal": "<exact>"}
//   - binary: {"$binary": {"base64": "...", "subType": "<2 hex>"}}
//   - timestamp: {"$timestamp": {"t": <s>, "i": <n>}}
//   - document, array: object (keys in document order), array
//   - regex, JavaScript, symbol, DBPointer, undefined, MinKey, MaxKey: their Extended JSON forms
func appendExtJSON(dst []byte, v bsoncore.Value) []byte {
	switch v.Type {
	case bsoncore.TypeString:
		s, _ := readString(v)
		return appendJSONString(dst, s)
	case bsoncore.TypeInt32, bsoncore.TypeInt64, bsoncore.TypeBoolean:
		out, _ := appendText(dst, v)
		return out
	case bsoncore.TypeDouble:
		f, ok := v.DoubleOK()
		if !ok {
			return append(dst, "null"...)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			dst = append(dst, `{"$numberDouble":"`...)
			dst = appendFloat(dst, f) // NaN, Infinity, -Infinity
			return append(dst, `"}`...)
		}
		start := len(dst)
		dst = strconv.AppendFloat(dst, f, 'G', -1, 64)
		for _, c := range dst[start:] {
			if c == '.' || c == 'E' {
				return dst
			}
		}
		return append(dst, '.', '0')
	case bsoncore.TypeNull, 0:
		return append(dst, "null"...)
	case bsoncore.TypeObjectID:
		oid, ok := v.ObjectIDOK()
		if !ok {
			return append(dst, "null"...)
		}
		dst = append(dst, `{"$oid":"`...)
		dst = appendHex(dst, oid[:])
		return append(dst, `"}`...)
	case bsoncore.TypeDateTime:
		ms, ok := v.DateTimeOK()
		if !ok {
			return append(dst, "null"...)
		}
		// 1970-01-01 to 9999-12-31T23:59:59.999Z.
		if ms >= 0 && ms <= 253402300799999 {
			dst = append(dst, `{"$date":"`...)
			dst = appendISOMillis(dst, ms)
			return append(dst, `"}`...)
		}
		dst = append(dst, `{"$date":{"$numberLong":"`...)
		dst = strconv.AppendInt(dst, ms, 10)
		return append(dst, `"}}`...)
	case bsoncore.TypeDecimal128:
		h, l, ok := v.Decimal128OK()
		if !ok {
			return append(dst, "null"...)
		}
		dst = append(dst, `{"$numberDecimal":"`...)
		dst = append(dst, bson.NewDecimal128(h, l).String()...)
		return append(dst, `"}`...)
	case bsoncore.TypeBinary:
		sub, data, ok := v.BinaryOK()
		if !ok {
			return append(dst, "null"...)
		}
		dst = append(dst, `{"$binary":{"base64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, data)
		dst = append(dst, `","subType":"`...)
		dst = appendHex(dst, []byte{sub})
		return append(dst, `"}}`...)
	case bsoncore.TypeTimestamp:
		t, i, ok := v.TimestampOK()
		if !ok {
			return append(dst, "null"...)
		}
		dst = append(dst, `{"$timestamp":{"t":`...)
		dst = strconv.AppendUint(dst, uint64(t), 10)
		dst = append(dst, `,"i":`...)
		dst = strconv.AppendUint(dst, uint64(i), 10)
		return append(dst, `}}`...)
	case bsoncore.TypeEmbeddedDocument:
		doc, ok := v.DocumentOK()
		if !ok {
			return append(dst, "null"...)
		}
		return appendContainer(dst, doc, '{', '}', true, appendExtJSON)
	case bsoncore.TypeArray:
		arr, ok := v.ArrayOK()
		if !ok {
			return append(dst, "null"...)
		}
		return appendContainer(dst, bsoncore.Document(arr), '[', ']', false, appendExtJSON)
	case bsoncore.TypeRegex:
		pattern, options, ok := v.RegexOK()
		if !ok {
			return append(dst, "null"...)
		}
		dst = append(dst, `{"$regularExpression":{"pattern":`...)
		dst = appendJSONString(dst, pattern)
		dst = append(dst, `,"options":`...)
		dst = appendJSONString(dst, options)
		return append(dst, `}}`...)
	case bsoncore.TypeJavaScript:
		code, ok := v.JavaScriptOK()
		if !ok {
			return append(dst, "null"...)
		}
		dst = append(dst, `{"$code":`...)
		dst = appendJSONString(dst, code)
		return append(dst, '}')
	case bsoncore.TypeCodeWithScope:
		code, scope, ok := v.CodeWithScopeOK()
		if !ok {
			return append(dst, "null"...)
		}
		dst = append(dst, `{"$code":`...)
		dst = appendJSONString(dst, code)
		dst = append(dst, `,"$scope":`...)
		dst = appendContainer(dst, scope, '{', '}', true, appendExtJSON)
		return append(dst, '}')
	case bsoncore.TypeSymbol:
		s, _ := readString(v)
		dst = append(dst, `{"$symbol":`...)
		dst = appendJSONString(dst, s)
		return append(dst, '}')
	case bsoncore.TypeDBPointer:
		ns, oid, ok := v.DBPointerOK()
		if !ok {
			return append(dst, "null"...)
		}
		dst = append(dst, `{"$dbPointer":{"$ref":`...)
		dst = appendJSONString(dst, ns)
		dst = append(dst, `,"$id":{"$oid":"`...)
		dst = appendHex(dst, oid[:])
		return append(dst, `"}}}`...)
	case bsoncore.TypeUndefined:
		return append(dst, `{"$undefined":true}`...)
	case bsoncore.TypeMinKey:
		return append(dst, `{"$minKey":1}`...)
	case bsoncore.TypeMaxKey:
		return append(dst, `{"$maxKey":1}`...)
	}
	return append(dst, "null"...)
}
