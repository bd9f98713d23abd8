package sink

import (
	"encoding/base64"
	"fmt"
	"hash/crc32"
	"math/bits"
	"sync"
)

// SegmentChecksum is the checksum of one segment of an object and the segment's length.
type SegmentChecksum struct {
	// Checksum is the segment's CRC as S3's x-amz-checksum-* headers carry it: base64 of the
	// big-endian bytes (4 for CRC32C, 8 for CRC64NVME).
	Checksum string
	// Size is the segment's length in bytes (0 for an empty segment, whose checksum is the
	// CRC of no bytes: all zero).
	Size int64
}

// CombineChecksums returns the full-object checksum (base64, as S3 carries it) of the
// concatenation of parts, in order, from each part's own checksum and length, without the
// data: the object of segments written by different machines gets its S3 FULL_OBJECT checksum
// from theirs. algorithm is ChecksumCRC32C or ChecksumCRC64NVME. No parts is the empty object.
//
// Each combine costs O(log Size) multiplications in GF(2)[x]/P (x^(8·Size) from a table of
// x^(2^k), as zlib's crc32_combine does since 1.2.12; the operator is kept while the sizes
// repeat): 10,000 segments of 5 MiB take about 0.7 ms (CRC32C) or 1.4 ms (CRC64NVME), of
// random sizes up to 5 GiB 7 or 13 ms.
func CombineChecksums(algorithm string, parts []SegmentChecksum) (string, error) {
	switch algorithm {
	case ChecksumCRC32C:
		return combineSegmentChecksums(crc32Castagnoli(), algorithm, parts)
	case ChecksumCRC64NVME:
		return combineSegmentChecksums(crc64NVME(), algorithm, parts)
	}
	return "", fmt.Errorf("sink: combine checksums: unsupported algorithm %q (want %s or %s)", algorithm, ChecksumCRC32C, ChecksumCRC64NVME)
}

var strictBase64 = base64.StdEncoding.Strict()

func combineSegmentChecksums[T crcWord](f *crcField[T], algorithm string, parts []SegmentChecksum) (string, error) {
	width := (f.top + 1) / 8 // bytes
	var crc T                // of no bytes
	// Segments mostly have the same size: the operator x^(8·size) of the last size is kept.
	lastSize, op := int64(0), f.one()
	var raw [8]byte
	for i, p := range parts {
		if p.Size < 0 {
			return "", fmt.Errorf("sink: combine checksums: segment %d has a negative size %d", i, p.Size)
		}
		n, err := 0, error(nil)
		if len(p.Checksum) == base64.StdEncoding.EncodedLen(width) { // else Decode could overrun raw
			n, err = strictBase64.Decode(raw[:], []byte(p.Checksum))
		}
		if err != nil || n != width {
			return "", fmt.Errorf("sink: combine checksums: segment %d: %q is not the base64 of a %d-byte %s", i, p.Checksum, width, algorithm)
		}
		var c T
		for _, b := range raw[:width] {
			c = c<<8 | T(b)
		}
		if p.Size == 0 && c != 0 {
			return "", fmt.Errorf("sink: combine checksums: segment %d is empty but its %s is %s, not the CRC of no bytes (0)", i, algorithm, p.Checksum)
		}
		if p.Size != lastSize {
			lastSize, op = p.Size, f.x8n(p.Size)
		}
		crc = f.mul(op, crc) ^ c
	}
	for i := range width {
		raw[i] = byte(crc >> (8 * (width - 1 - i)))
	}
	return base64.StdEncoding.EncodeToString(raw[:width]), nil
}

// combineCRC32 returns the CRC of A followed by B from crcA, crcB and B's length, for a
// reflected CRC-32 of polynomial poly (reflected, as hash/crc32 takes it: crc32.Castagnoli,
// crc32.IEEE, ...) whose initial value and final xor are both all ones, as in hash/crc32.
// lenB must not be negative.
func combineCRC32(crcA, crcB uint32, lenB int64, poly uint32) uint32 {
	return crc32Field(poly).combine(crcA, crcB, lenB)
}

// combineCRC64 is combineCRC32 for a reflected CRC-64 as hash/crc64 computes it (poly as
// crc64.MakeTable takes it: 0x9a6c9329ac4bc9b5 for CRC64NVME, crc64.ECMA, crc64.ISO).
func combineCRC64(crcA, crcB uint64, lenB int64, poly uint64) uint64 {
	return crc64Field(poly).combine(crcA, crcB, lenB)
}

// crcWord is the register of a CRC.
type crcWord interface{ ~uint32 | ~uint64 }

// crcField is arithmetic modulo a CRC's polynomial P over GF(2), in the CRC's reflected
// representation: the most significant bit is the coefficient of x^0, the least that of
// x^(w-1).
type crcField[T crcWord] struct {
	poly T
	top  int // the CRC's width less one
	// x2n[k] is x^(2^k) mod P. k goes up to 3+62: x^(8n) for any n < 2^63 is a product of
	// x^(2^(k+3)) over the bits k of n. (zlib keeps 32 entries and wraps k around; computing
	// them as far as needed holds for any polynomial.)
	x2n [66]T
}

// one is the polynomial 1 (x^0).
func (f *crcField[T]) one() T { return ^T(0) ^ (^T(0) >> 1) }

func newCRCField[T crcWord](poly T) *crcField[T] {
	f := &crcField[T]{poly: poly, top: bits.Len64(uint64(^T(0))) - 1}
	f.x2n[0] = f.one() >> 1 // x^1
	for k := 1; k < len(f.x2n); k++ {
		f.x2n[k] = f.mul(f.x2n[k-1], f.x2n[k-1])
	}
	return f
}

// mul returns a·b mod P (zlib's multmodp): the sum of b·x^i over the terms x^i of a, b·x^i
// obtained by multiplying b by x i times (a shift, and a reduction by P when the x^(w-1) term
// overflows). Branch-free: the terms of random values are unpredictable.
func (f *crcField[T]) mul(a, b T) T {
	var p T
	for ; a != 0; a <<= 1 { // the x^0 term of a is its top bit
		p ^= b & -(a >> f.top)
		b = b>>1 ^ f.poly&-(b&1)
	}
	return p
}

// x8n returns x^(8n) mod P: the operator that moves a CRC register past n bytes.
func (f *crcField[T]) x8n(n int64) T {
	if n < 0 {
		panic(fmt.Sprintf("sink: CRC combine of a negative length %d", n))
	}
	if n == 0 {
		return f.one()
	}
	k := 3 + bits.TrailingZeros64(uint64(n))
	n >>= k - 3
	p := f.x2n[k] // 1·x^(2^k)
	for n >>= 1; n != 0; n >>= 1 {
		k++
		if n&1 != 0 {
			p = f.mul(f.x2n[k], p)
		}
	}
	return p
}

// combine returns CRC(A‖B). With register R after A (crcA = R ^ ones), CRC(A‖B) is
// R·x^(8n) ⊕ L(B) ⊕ ones where L is B's contribution from a zero register, and crcB is
// ones·x^(8n) ⊕ L(B) ⊕ ones; the init and final xor being the same, the ones terms cancel:
// CRC(A‖B) = crcA·x^(8n) ⊕ crcB.
func (f *crcField[T]) combine(crcA, crcB T, lenB int64) T {
	if crcA == 0 {
		return crcB // A empty (or of CRC 0, which x^(8n) keeps 0)
	}
	return f.mul(f.x8n(lenB), crcA) ^ crcB
}

// crc64NVMEPoly is CRC64NVME's polynomial, reflected, as crc64NVMETable is made of.
const crc64NVMEPoly = 0x9a6c9329ac4bc9b5

var (
	crc32Castagnoli = sync.OnceValue(func() *crcField[uint32] { return newCRCField[uint32](crc32.Castagnoli) })
	crc64NVME       = sync.OnceValue(func() *crcField[uint64] { return newCRCField[uint64](crc64NVMEPoly) })
	crcFields       sync.Map // crcFieldKey -> *crcField[uint32] or *crcField[uint64]
)

type crcFieldKey struct {
	width int
	poly  uint64
}

func crc32Field(poly uint32) *crcField[uint32] {
	if f := crc32Castagnoli(); f.poly == poly {
		return f
	}
	k := crcFieldKey{32, uint64(poly)}
	if f, ok := crcFields.Load(k); ok {
		return f.(*crcField[uint32])
	}
	f, _ := crcFields.LoadOrStore(k, newCRCField(poly))
	return f.(*crcField[uint32])
}

func crc64Field(poly uint64) *crcField[uint64] {
	if f := crc64NVME(); f.poly == poly {
		return f
	}
	k := crcFieldKey{64, poly}
	if f, ok := crcFields.Load(k); ok {
		return f.(*crcField[uint64])
	}
	f, _ := crcFields.LoadOrStore(k, newCRCField(poly))
	return f.(*crcField[uint64])
}
