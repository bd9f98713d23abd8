package jsontest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Validate reports the problems of instance (raw JSON) against the JSON Schema 2020-12 document
// root (as Decode returns it); none means valid, and invalid JSON is a problem too. It
// implements exactly the keywords the schemas of docs/ use: a schema with any other keyword is
// an error, so that no schema relies on a keyword nothing checks.
func Validate(root any, instance []byte) ([]string, error) {
	v, err := Decode(instance)
	if err != nil {
		return []string{"not JSON: " + err.Error()}, nil
	}
	ev := &evaluator{root: root}
	ev.eval(root, v, "")
	if ev.unknown != nil {
		return nil, fmt.Errorf("jsontest: the schema uses keyword %q, which Validate does not implement", *ev.unknown)
	}
	return ev.problems, nil
}

type evaluator struct {
	root     any
	problems []string
	unknown  *string
}

var annotationKeywords = []string{"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples"}

// eval applies schema to v at path, recording problems.
func (ev *evaluator) eval(schema, v any, path string) {
	switch s := schema.(type) {
	case bool:
		if !s {
			ev.fail(path, "not allowed")
		}
		return
	case map[string]any:
		keys := make([]string, 0, len(s))
		for k := range s {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ev.keyword(s, k, s[k], v, path)
		}
	default:
		ev.fail(path, fmt.Sprintf("schema is a %T", schema))
	}
}

func (ev *evaluator) fail(path, msg string) {
	ev.problems = append(ev.problems, fmt.Sprintf("%s: %s", path, msg))
}

// valid evaluates schema on its own, for the applicators that only need a verdict.
func (ev *evaluator) valid(schema, v any, path string) bool {
	sub := &evaluator{root: ev.root}
	sub.eval(schema, v, path)
	if sub.unknown != nil {
		ev.unknown = sub.unknown
	}
	return len(sub.problems) == 0
}

func (ev *evaluator) keyword(s map[string]any, k string, arg, v any, path string) {
	obj, isObj := v.(map[string]any)
	arr, isArr := v.([]any)
	str, isStr := v.(string)
	num, isNum := v.(json.Number)
	switch k {
	case "type":
		types := []any{arg}
		if a, ok := arg.([]any); ok {
			types = a
		}
		if !slices.ContainsFunc(types, func(t any) bool { return jsonTypeIs(v, t.(string)) }) {
			ev.fail(path, fmt.Sprintf("not of type %v", arg))
		}
	case "enum":
		if !slices.ContainsFunc(arg.([]any), func(e any) bool { return Equal(e, v) }) {
			ev.fail(path, "not in enum")
		}
	case "const":
		if !Equal(arg, v) {
			ev.fail(path, "not the const")
		}
	case "properties":
		if isObj {
			for name, sub := range arg.(map[string]any) {
				if pv, ok := obj[name]; ok {
					ev.eval(sub, pv, path+"/"+name)
				}
			}
		}
	case "additionalProperties":
		if isObj {
			props, _ := s["properties"].(map[string]any)
			for name, pv := range obj {
				if _, ok := props[name]; !ok {
					ev.eval(arg, pv, path+"/"+name)
				}
			}
		}
	case "required":
		if isObj {
			for _, r := range arg.([]any) {
				if _, ok := obj[r.(string)]; !ok {
					ev.fail(path, "missing "+r.(string))
				}
			}
		}
	case "pattern":
		if isStr && !schemaRegexp(arg.(string)).MatchString(str) {
			ev.fail(path, "does not match "+arg.(string))
		}
	case "minLength":
		if isStr && utf8.RuneCountInString(str) < jsonInt(arg) {
			ev.fail(path, "too short")
		}
	case "maxLength":
		if isStr && utf8.RuneCountInString(str) > jsonInt(arg) {
			ev.fail(path, "too long")
		}
	case "minimum", "maximum":
		if isNum {
			f, _ := num.Float64()
			lim, _ := arg.(json.Number).Float64()
			if k == "minimum" && f < lim || k == "maximum" && f > lim {
				ev.fail(path, "out of range")
			}
		}
	case "format":
		if arg != "date-time" {
			ev.unknown = &k
			return
		}
		var t time.Time
		if isStr && t.UnmarshalText([]byte(str)) != nil {
			ev.fail(path, "not a date-time")
		}
	case "items":
		for i, item := range arr {
			ev.eval(arg, item, fmt.Sprintf("%s/%d", path, i))
		}
	case "minItems":
		if isArr && len(arr) < jsonInt(arg) {
			ev.fail(path, "too few items")
		}
	case "maxItems":
		if isArr && len(arr) > jsonInt(arg) {
			ev.fail(path, "too many items")
		}
	case "uniqueItems":
		if isArr && arg == true {
			for i := range arr {
				for j := range i {
					if Equal(arr[i], arr[j]) {
						ev.fail(path, "items not unique")
					}
				}
			}
		}
	case "allOf":
		for _, sub := range arg.([]any) {
			ev.eval(sub, v, path)
		}
	case "anyOf", "oneOf":
		n := 0
		for _, sub := range arg.([]any) {
			if ev.valid(sub, v, path) {
				n++
			}
		}
		if n == 0 || k == "oneOf" && n > 1 {
			ev.fail(path, k+" not satisfied")
		}
	case "not":
		if ev.valid(arg, v, path) {
			ev.fail(path, "matches what it must not")
		}
	case "if":
		if ev.valid(arg, v, path) {
			if then, ok := s["then"]; ok {
				ev.eval(then, v, path)
			}
		} else if els, ok := s["else"]; ok {
			ev.eval(els, v, path)
		}
	case "then", "else":
		// applied by "if"
	case "$ref":
		ref := arg.(string)
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		target := ev.root.(map[string]any)["$defs"].(map[string]any)[name]
		if !ok || target == nil {
			ev.unknown = &ref
			return
		}
		ev.eval(target, v, path)
	default:
		if !slices.Contains(annotationKeywords, k) {
			ev.unknown = &k
		}
	}
}

var schemaRegexps sync.Map // pattern -> *regexp.Regexp

func schemaRegexp(pattern string) *regexp.Regexp {
	if re, ok := schemaRegexps.Load(pattern); ok {
		return re.(*regexp.Regexp)
	}
	re := regexp.MustCompile(pattern)
	schemaRegexps.Store(pattern, re)
	return re
}

func jsonTypeIs(v any, t string) bool {
	switch t {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, digits, point := NormalizeNumber(string(n))
		return digits == "" || int64(len(digits)) <= point
	}
	return false
}

func jsonInt(v any) int {
	n, _ := strconv.Atoi(string(v.(json.Number)))
	return n
}
