// Package jsontest reads and compares JSON values in tests: one value with its numbers kept
// exact (json.Number), and equality as JSON Schema defines it (numbers by value, objects and
// arrays deeply). The job message's schema tests and the encoders' Extended JSON tests use it.
package jsontest

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
)

// Decode decodes one JSON value with numbers kept as json.Number, nothing after it.
func Decode(b []byte) (any, error) {
	// The decoder alone takes a stray closing bracket after the value ("{}}") for the end.
	if !json.Valid(b) {
		return nil, errors.New("not one valid JSON value")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the value")
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("data after the value")
	}
	return v, nil
}

// Equal is JSON Schema equality: numbers by value, objects and arrays deeply.
func Equal(a, b any) bool {
	an, aok := a.(json.Number)
	bn, bok := b.(json.Number)
	if aok || bok {
		if !aok || !bok {
			return false
		}
		n1, d1, p1 := NormalizeNumber(string(an))
		n2, d2, p2 := NormalizeNumber(string(bn))
		return d1 == d2 && (d1 == "" || n1 == n2 && p1 == p2)
	}
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, av := range a {
			bv, ok := bm[k]
			if !ok || !Equal(av, bv) {
				return false
			}
		}
		return true
	case []any:
		ba, ok := b.([]any)
		if !ok || len(a) != len(ba) {
			return false
		}
		for i := range a {
			if !Equal(a[i], ba[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// NormalizeNumber writes a JSON number as sign, significant digits (no leading or trailing
// zeros; "" for zero) and the position of the decimal point: value = 0.digits * 10^point.
func NormalizeNumber(s string) (neg bool, digits string, point int64) {
	neg = strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, exp, _ := strings.Cut(strings.ToLower(s), "e")
	ip, fp, _ := strings.Cut(mant, ".")
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil && exp != "" {
		e = 1 << 40 // absurd exponents: keep them distinct from every sane number
		if strings.HasPrefix(exp, "-") {
			e = -e
		}
	}
	digits = ip + fp
	point = int64(len(ip)) + e
	for len(digits) > 0 && digits[0] == '0' {
		digits = digits[1:]
		point--
	}
	digits = strings.TrimRight(digits, "0")
	return neg, digits, point
}
