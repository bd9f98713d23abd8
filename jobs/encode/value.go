package encode

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// isoMillis is the one date format every encoder writes: ISO 8601 in UTC with milliseconds,
// which is also the precision of a BSON datetime.
const isoMillis = "2006-01-02T15:04:05.000Z"

// appendText appends v as the text of one CSV cell. text reports whether the value came from a
// string in the document (and so may need formula escaping); numbers, dates and ids never do.
//
// Representation (documented in the README):
//   - missing, null, undefined: empty
//   - string, symbol: as is
//   - int32, int64: decimal; double: shortest decimal that round-trips, no exponent
//   - decimal128: its exact decimal string
//   - bool: true / false
//   - datetime, timestamp: ISO 8601 UTC with milliseconds
//   - ObjectId: 24 lowercase hex digits
//   - binary: standard base64
//   - embedded document, array: compact JSON (see appendJSON)
func appendText(dst []byte, v bsoncore.Value) (out []byte, text bool) {
	switch v.Type {
	case bsoncore.TypeString, bsoncore.TypeSymbol:
		s, ok := readString(v)
		if !ok {
			return dst, false
		}
		return append(dst, s...), true
	case bsoncore.TypeInt32:
		i, ok := v.Int32OK()
		if !ok {
			return dst, false
		}
		return strconv.AppendInt(dst, int64(i), 10), false
	case bsoncore.TypeInt64:
		i, ok := v.Int64OK()
		if !ok {
			return dst, false
		}
		return strconv.AppendInt(dst, i, 10), false
	case bsoncore.TypeDouble:
		f, ok := v.DoubleOK()
		if !ok {
			return dst, false
		}
		return appendFloat(dst, f), false
	case bsoncore.TypeBoolean:
		b, ok := v.BooleanOK()
		if !ok {
			return dst, false
		}
		return strconv.AppendBool(dst, b), false
	case bsoncore.TypeDateTime:
		ms, ok := v.DateTimeOK()
		if !ok {
			return dst, false
		}
		return appendISOMillis(dst, ms), false
	case bsoncore.TypeTimestamp:
		t, _, ok := v.TimestampOK()
		if !ok {
			return dst, false
		}
		return appendISOMillis(dst, int64(t)*1000), false
	case bsoncore.TypeObjectID:
		oid, ok := v.ObjectIDOK()
		if !ok {
			return dst, false
		}
		return appendHex(dst, oid[:]), false
	case bsoncore.TypeDecimal128:
		h, l, ok := v.Decimal128OK()
		if !ok {
			return dst, false
		}
		return append(dst, bson.NewDecimal128(h, l).String()...), false
	case bsoncore.TypeBinary:
		_, data, ok := v.BinaryOK()
		if !ok {
			return dst, false
		}
		return base64.StdEncoding.AppendEncode(dst, data), false
	case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray:
		return appendJSON(dst, v), false
	case bsoncore.TypeNull, bsoncore.TypeUndefined, 0:
		return dst, false
	default:
		// Regex, JavaScript, MinKey, ... never appear in the kinds' fields; write the driver's
		// extended JSON form rather than drop them silently.
		return append(dst, v.String()...), true
	}
}

// appendJSON appends v as plain typed JSON: strings, numbers and booleans as JSON values, dates as
// ISO 8601 strings, ObjectIds as hex strings, decimal128 as a string (exact), binary as a base64
// string, documents as objects (keys in document order) and arrays as arrays. Non-finite doubles
// have no JSON form and are written as null.
func appendJSON(dst []byte, v bsoncore.Value) []byte {
	switch v.Type {
	case bsoncore.TypeString, bsoncore.TypeSymbol:
		s, _ := readString(v)
		return appendJSONString(dst, s)
	case bsoncore.TypeInt32, bsoncore.TypeInt64:
		out, _ := appendText(dst, v)
		return out
	case bsoncore.TypeDouble:
		f, _ := v.DoubleOK()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return append(dst, "null"...)
		}
		return appendFloat(dst, f)
	case bsoncore.TypeBoolean:
		b, _ := v.BooleanOK()
		return strconv.AppendBool(dst, b)
	case bsoncore.TypeNull, bsoncore.TypeUndefined, 0:
		return append(dst, "null"...)
	case bsoncore.TypeEmbeddedDocument:
		doc, ok := v.DocumentOK()
		if !ok {
			return append(dst, "null"...)
		}
		return appendContainer(dst, doc, '{', '}', true, appendJSON)
	case bsoncore.TypeArray:
		arr, ok := v.ArrayOK()
		if !ok {
			return append(dst, "null"...)
		}
		return appendContainer(dst, bsoncore.Document(arr), '[', ']', false, appendJSON)
	default:
		dst = append(dst, '"')
		start := len(dst)
		dst, _ = appendText(dst, v)
		// The text of these types (hex, digits, dates, base64) needs no escaping, except the
		// fallback for exotic types; escape it properly if so.
		if needsJSONEscape(dst[start:]) {
			s := string(dst[start:])
			dst = appendJSONString(dst[:start-1], s)
			return dst
		}
		return append(dst, '"')
	}
}

// appendContainer appends a document (keys true) or an array as JSON, its values written by value.
func appendContainer(dst []byte, doc bsoncore.Document, open, closing byte, keys bool, value func([]byte, bsoncore.Value) []byte) []byte {
	dst = append(dst, open)
	if len(doc) < 5 {
		return append(dst, closing)
	}
	rem := doc[4 : len(doc)-1]
	for i := 0; i < len(rem); {
		t := bsoncore.Type(rem[i])
		nul := bytes.IndexByte(rem[i+1:], 0)
		if nul < 0 {
			break
		}
		key := rem[i+1 : i+1+nul]
		j := i + 2 + nul
		n := valueSize(t, rem[j:])
		if n < 0 {
			break
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		if keys {
			dst = appendJSONString(dst, unsafeString(key))
			dst = append(dst, ':')
		}
		dst = value(dst, bsoncore.Value{Type: t, Data: rem[j : j+n]})
		i = j + n
	}
	return append(dst, closing)
}

// appendISOMillis appends the datetime ms (milliseconds since the Unix epoch) as
// 2006-01-02T15:04:05.000Z. Years 0-9999 are formatted here, faster than time.AppendFormat (this
// runs for every date cell); others by time, which writes them as it does.
func appendISOMillis(dst []byte, ms int64) []byte {
	const (
		minMs = -62167219200000 // 0000-01-01T00:00:00Z
		maxMs = 253402300799999 // 9999-12-31T23:59:59.999Z
	)
	if ms < minMs || ms > maxMs {
		return time.UnixMilli(ms).UTC().AppendFormat(dst, isoMillis)
	}
	secs := ms / 1000
	milli := ms % 1000
	if milli < 0 {
		secs--
		milli += 1000
	}
	days := secs / 86400
	sod := secs % 86400
	if sod < 0 {
		days--
		sod += 86400
	}
	y, m, d := civilFromDays(days)
	dst = append(dst,
		byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+m/10), byte('0'+m%10), '-',
		byte('0'+d/10), byte('0'+d%10), 'T',
		byte('0'+sod/36000), byte('0'+sod/3600%10), ':',
		byte('0'+sod%3600/600), byte('0'+sod%3600/60%10), ':',
		byte('0'+sod%60/10), byte('0'+sod%10), '.',
		byte('0'+milli/100), byte('0'+milli/10%10), byte('0'+milli%10), 'Z')
	return dst
}

// civilFromDays converts days since 1970-01-01 to a proleptic Gregorian date (Howard
// Hinnant's algorithm, exact for every int64 day of the range appendISOMillis uses).
func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097                                  // [0, 146096]
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // [0, 399]
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100) // [0, 365]
	mp := (5*doy + 2) / 153                  // [0, 11]
	d = doy - (153*mp+2)/5 + 1               // [1, 31]
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

const hexDigits = "0123456789abcdef"

func appendHex(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0x0f])
	}
	return dst
}

func appendFloat(dst []byte, f float64) []byte {
	if math.IsInf(f, 1) {
		return append(dst, "Infinity"...)
	}
	if math.IsInf(f, -1) {
		return append(dst, "-Infinity"...)
	}
	return strconv.AppendFloat(dst, f, 'f', -1, 64)
}

// readStringBytes returns the bytes of a string or symbol value, without copying.
func readStringBytes(v bsoncore.Value) ([]byte, bool) {
	if len(v.Data) < 5 {
		return nil, false
	}
	n := int(int32(binary.LittleEndian.Uint32(v.Data)))
	if n < 1 || 4+n > len(v.Data) {
		return nil, false
	}
	return v.Data[4 : 4+n-1], true
}

// dateCache remembers the date part of the last datetime an encoder wrote: an export's rows
// are sorted by _id, which mostly means by creation time, so consecutive dates share their day.
type dateCache struct {
	day    int64
	prefix [11]byte // "2006-01-02T"
	ok     bool
}

// append appends ms as appendISOMillis does.
func (c *dateCache) append(dst []byte, ms int64) []byte {
	const dayMs = 86400000
	day := ms / dayMs
	rem := ms % dayMs
	if rem < 0 {
		day--
		rem += dayMs
	}
	if !c.ok || day != c.day {
		var buf [32]byte
		out := appendISOMillis(buf[:0], day*dayMs)
		if len(out) != 24 { // outside years 0-9999
			c.ok = false
			return appendISOMillis(dst, ms)
		}
		copy(c.prefix[:], out)
		c.day, c.ok = day, true
	}
	sod, milli := rem/1000, rem%1000
	return append(append(dst, c.prefix[:]...),
		byte('0'+sod/36000), byte('0'+sod/3600%10), ':',
		byte('0'+sod%3600/600), byte('0'+sod%3600/60%10), ':',
		byte('0'+sod%60/10), byte('0'+sod%10), '.',
		byte('0'+milli/100), byte('0'+milli/10%10), byte('0'+milli%10), 'Z')
}

// readString returns the string payload of a string or symbol value without allocating.
func readString(v bsoncore.Value) (string, bool) {
	// Layout: int32 length (including the trailing NUL), bytes, NUL.
	if len(v.Data) < 5 {
		return "", false
	}
	n := int(int32(uint32(v.Data[0]) | uint32(v.Data[1])<<8 | uint32(v.Data[2])<<16 | uint32(v.Data[3])<<24))
	if n < 1 || 4+n > len(v.Data) {
		return "", false
	}
	return unsafeString(v.Data[4 : 4+n-1]), true
}

func needsJSONEscape(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD; U+2028 and U+2029
// are escaped so that a line of NDJSON is also valid JavaScript.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
