package encode

import "unsafe"

// unsafeString views b as a string without copying. Callers only use the result while b is
// alive and unmodified (within one append call on the current document).
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
