// Package clip shortens text for places with a size limit (ledger fields, SQS attributes).
package clip

import "unicode/utf8"

// String returns s cut to at most n bytes on a character boundary, marked with "..." when it
// was cut.
func String(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
