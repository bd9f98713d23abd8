package encode

// MustRaw is mustRaw, for the tests of package encode_test (golden_test.go, kinds_test.go).
var MustRaw = mustRaw
