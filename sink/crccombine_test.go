package sink

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/verifiedfan/export-service/jobs"
)

var combineAlgorithms = []string{ChecksumCRC32C, ChecksumCRC64NVME}

// combineSinkChecksum is the base64 checksum of data as the sink computes and sends it.
func combineSinkChecksum(algorithm string, data []byte) string {
	return (&S3{opts: S3Options{Checksum: algorithm}}).checksum(data)
}

func combineRandomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// combineRandomCuts splits [0, size) at pieces-1 random points, in order; points may repeat
// (empty pieces), and may be 0 or size (an empty first or last piece).
func combineRandomCuts(r *rand.Rand, size int64, pieces int) []int64 {
	cuts := []int64{0, size}
	for range pieces - 1 {
		switch r.IntN(6) {
		case 0: // a repeated point: an empty piece in the middle
			cuts = append(cuts, cuts[r.IntN(len(cuts))])
		default:
			cuts = append(cuts, r.Int64N(size+1))
		}
	}
	slices.Sort(cuts)
	return cuts
}

func combinePieces(algorithm string, data []byte, cuts []int64) []SegmentChecksum {
	var parts []SegmentChecksum
	for i := 1; i < len(cuts); i++ {
		piece := data[cuts[i-1]:cuts[i]]
		parts = append(parts, SegmentChecksum{Checksum: combineSinkChecksum(algorithm, piece), Size: int64(len(piece))})
	}
	return parts
}

// Random data split at random points into 1..20 pieces (empty ones included): combining the
// pieces' checksums gives the checksum of the whole, as the sink computes it.
func TestCombineChecksumsRandomSplits(t *testing.T) {
	t.Parallel()
	for _, alg := range combineAlgorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(1, uint64(len(alg))))
			sawEmpty := 0
			for trial := range 400 {
				size := r.IntN(64 << 10)
				switch trial % 10 {
				case 0:
					size = r.IntN(16) // tiny: most pieces empty
				case 1:
					size = 1<<20 + r.IntN(1<<20)
				}
				data := combineRandomBytes(r, size)
				cuts := combineRandomCuts(r, int64(size), 1+r.IntN(20))
				parts := combinePieces(alg, data, cuts)
				for _, p := range parts {
					if p.Size == 0 {
						sawEmpty++
					}
				}
				got, err := CombineChecksums(alg, parts)
				if err != nil {
					t.Fatalf("trial %d: %v", trial, err)
				}
				if want := combineSinkChecksum(alg, data); got != want {
					t.Fatalf("trial %d: %d bytes cut at %v: combined %s, whole %s", trial, size, cuts, got, want)
				}
			}
			if sawEmpty == 0 {
				t.Error("no trial had an empty piece")
			}
		})
	}
}

// One segment is its own checksum; no segments is the empty object; empty segments anywhere
// change nothing.
func TestCombineChecksumsEdges(t *testing.T) {
	t.Parallel()
	for _, alg := range combineAlgorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			data := []byte("The quick brown fox jumps over the lazy dog")
			whole := combineSinkChecksum(alg, data)
			empty := combineSinkChecksum(alg, nil)
			for name, tc := range map[string]struct {
				parts []SegmentChecksum
				want  string
			}{
				"no segments":   {nil, empty},
				"one empty":     {[]SegmentChecksum{{empty, 0}}, empty},
				"three empty":   {[]SegmentChecksum{{empty, 0}, {empty, 0}, {empty, 0}}, empty},
				"one segment":   {[]SegmentChecksum{{whole, int64(len(data))}}, whole},
				"empty around":  {[]SegmentChecksum{{empty, 0}, {whole, int64(len(data))}, {empty, 0}}, whole},
				"byte by byte":  {combinePieces(alg, data, combineEveryByte(len(data))), whole},
				"empty between": {combinePieces(alg, data, []int64{0, 10, 10, 10, int64(len(data))}), whole},
			} {
				got, err := CombineChecksums(alg, tc.parts)
				if err != nil || got != tc.want {
					t.Errorf("%s: got %q, %v; want %q", name, got, err, tc.want)
				}
			}
		})
	}
}

func combineEveryByte(n int) []int64 {
	cuts := make([]int64, n+1)
	for i := range cuts {
		cuts[i] = int64(i)
	}
	return cuts
}

func TestCombineChecksumsErrors(t *testing.T) {
	t.Parallel()
	crc32Of := combineSinkChecksum(ChecksumCRC32C, []byte("x"))
	crc64Of := combineSinkChecksum(ChecksumCRC64NVME, []byte("x"))
	for name, tc := range map[string]struct {
		alg   string
		parts []SegmentChecksum
		want  string
	}{
		"unknown algorithm":       {"SHA256", []SegmentChecksum{{crc32Of, 1}}, "unsupported algorithm"},
		"CRC32 algorithm":         {"CRC32", nil, "unsupported algorithm"},
		"lower case":              {"crc32c", nil, "unsupported algorithm"},
		"not base64":              {ChecksumCRC32C, []SegmentChecksum{{"!!!!!!==", 1}}, "not the base64"},
		"CRC64 value for CRC32C":  {ChecksumCRC32C, []SegmentChecksum{{crc64Of, 1}}, "not the base64"},
		"CRC32C value for CRC64":  {ChecksumCRC64NVME, []SegmentChecksum{{crc32Of, 1}}, "not the base64"},
		"too long":                {ChecksumCRC64NVME, []SegmentChecksum{{crc64Of + crc64Of, 1}}, "not the base64"},
		"no padding":              {ChecksumCRC32C, []SegmentChecksum{{strings.TrimRight(crc32Of, "="), 1}}, "not the base64"},
		"empty string":            {ChecksumCRC32C, []SegmentChecksum{{"", 0}}, "not the base64"},
		"part count suffix":       {ChecksumCRC32C, []SegmentChecksum{{crc32Of + "-2", 1}}, "not the base64"},
		"negative size":           {ChecksumCRC32C, []SegmentChecksum{{crc32Of, -1}}, "negative size"},
		"empty with a CRC32C":     {ChecksumCRC32C, []SegmentChecksum{{crc32Of, 1}, {crc32Of, 0}}, "segment 1 is empty"},
		"empty with a CRC64NVME":  {ChecksumCRC64NVME, []SegmentChecksum{{crc64Of, 0}}, "segment 0 is empty"},
		"second segment is wrong": {ChecksumCRC32C, []SegmentChecksum{{crc32Of, 1}, {"AAAA", 1}}, "segment 1"},
	} {
		got, err := CombineChecksums(tc.alg, tc.parts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %q, %v; want an error with %q", name, got, err, tc.want)
		}
	}
}

// The raw helpers work for any reflected polynomial hash/crc32 and hash/crc64 take, and the
// sink's tables are of the polynomials CombineChecksums uses.
func TestCombineRawHelpers(t *testing.T) {
	t.Parallel()
	if castagnoliTable[0x80] != crc32.Castagnoli || crc64NVMETable[0x80] != crc64NVMEPoly {
		t.Fatalf("the sink's tables are not of the polynomials combined: %#x %#x", castagnoliTable[0x80], crc64NVMETable[0x80])
	}
	r := rand.New(rand.NewPCG(2, 2))
	for _, poly := range []uint32{crc32.Castagnoli, crc32.IEEE, crc32.Koopman} {
		tab := crc32.MakeTable(poly)
		for range 200 {
			a, b := combineRandomBytes(r, r.IntN(3000)), combineRandomBytes(r, r.IntN(3000))
			got := combineCRC32(crc32.Checksum(a, tab), crc32.Checksum(b, tab), int64(len(b)), poly)
			if want := crc32.Checksum(append(a, b...), tab); got != want {
				t.Fatalf("poly %#x, %d+%d bytes: %#x, want %#x", poly, len(a), len(b), got, want)
			}
		}
	}
	for _, poly := range []uint64{crc64NVMEPoly, crc64.ECMA, crc64.ISO} {
		tab := crc64.MakeTable(poly)
		for range 200 {
			a, b := combineRandomBytes(r, r.IntN(3000)), combineRandomBytes(r, r.IntN(3000))
			got := combineCRC64(crc64.Checksum(a, tab), crc64.Checksum(b, tab), int64(len(b)), poly)
			if want := crc64.Checksum(append(a, b...), tab); got != want {
				t.Fatalf("poly %#x, %d+%d bytes: %#x, want %#x", poly, len(a), len(b), got, want)
			}
		}
	}
}

// Long runs of zeros: CRC(A ‖ n zero bytes) computed directly, up to a few MiB.
func TestCombineZeroRuns(t *testing.T) {
	t.Parallel()
	zeros := make([]byte, 5<<20+7)
	a := []byte("segment A")
	for _, n := range []int{0, 1, 7, 8, 255, 4096, 1 << 20, 5 << 20, 5<<20 + 7} {
		z := zeros[:n]
		got32 := combineCRC32(crc32.Checksum(a, castagnoliTable), crc32.Checksum(z, castagnoliTable), int64(n), crc32.Castagnoli)
		if want := crc32.Update(crc32.Checksum(a, castagnoliTable), castagnoliTable, z); got32 != want {
			t.Errorf("CRC32C of A + %d zeros: %#x, want %#x", n, got32, want)
		}
		got64 := combineCRC64(crc64.Checksum(a, crc64NVMETable), crc64.Checksum(z, crc64NVMETable), int64(n), crc64NVMEPoly)
		if want := crc64.Update(crc64.Checksum(a, crc64NVMETable), crc64NVMETable, z); got64 != want {
			t.Errorf("CRC64NVME of A + %d zeros: %#x, want %#x", n, got64, want)
		}
	}
}

// matrixCombine is zlib's original crc32_combine (before 1.2.12), generalized to width bits:
// the operator of one zero bit as a GF(2) matrix, squared to the operators of 2, 4, 8, ...
// zero bits, applied for the bits of lenB. An independent check of x^(8n) for lengths far too
// long to checksum, up to S3's 5 TB and beyond.
func matrixCombine(width int, poly, crcA, crcB uint64, lenB int64) uint64 {
	times := func(mat []uint64, vec uint64) (sum uint64) {
		for i := 0; vec != 0; i, vec = i+1, vec>>1 {
			if vec&1 != 0 {
				sum ^= mat[i]
			}
		}
		return sum
	}
	square := func(sq, mat []uint64) {
		for n := range width {
			sq[n] = times(mat, mat[n])
		}
	}
	if lenB == 0 {
		return crcA ^ crcB
	}
	odd, even := make([]uint64, width), make([]uint64, width)
	odd[0] = poly // the operator of one zero bit
	for n, row := 1, uint64(1); n < width; n, row = n+1, row<<1 {
		odd[n] = row
	}
	square(even, odd) // two zero bits
	square(odd, even) // four
	for {
		square(even, odd) // first 8, then 32, 128, ... zero bits
		if lenB&1 != 0 {
			crcA = times(even, crcA)
		}
		if lenB >>= 1; lenB == 0 {
			break
		}
		square(odd, even)
		if lenB&1 != 0 {
			crcA = times(odd, crcA)
		}
		if lenB >>= 1; lenB == 0 {
			break
		}
	}
	return crcA ^ crcB
}

func TestCombineMatchesMatrixMethod(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 3))
	lengths := []int64{0, 1, 2, 3, 5 << 20, 5 << 30, 5_000_000_000_000, 5 << 40, 1<<62 + 12345, 1<<63 - 1}
	for range 300 {
		lengths = append(lengths, r.Int64N(5<<40+1), r.Int64N(1<<20), r.Int64())
	}
	for _, n := range lengths {
		a32, b32 := r.Uint32(), r.Uint32()
		if got, want := combineCRC32(a32, b32, n, crc32.Castagnoli), uint32(matrixCombine(32, crc32.Castagnoli, uint64(a32), uint64(b32), n)); got != want {
			t.Fatalf("CRC32C, lenB %d: %#x, matrix method %#x", n, got, want)
		}
		a64, b64 := r.Uint64(), r.Uint64()
		if got, want := combineCRC64(a64, b64, n, crc64NVMEPoly), matrixCombine(64, crc64NVMEPoly, a64, b64, n); got != want {
			t.Fatalf("CRC64NVME, lenB %d: %#x, matrix method %#x", n, got, want)
		}
	}
}

// An object uploaded by the sink in three parts of 5 MiB, 5 MiB and 2 MiB: CombineChecksums of
// the checksums of pieces cut elsewhere (and an empty one) is the FULL_OBJECT checksum the
// server returns with the object, on HeadObject and on GetObject.
func TestCombineChecksumsMatchS3(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	for i, alg := range combineAlgorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			r := rand.New(rand.NewPCG(4, uint64(i)))
			data := combineRandomBytes(r, 12<<20)
			key := b.prefix + "combine-" + alg
			sk := NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{PartSize: 5 << 20, Concurrency: 2, Checksum: alg})
			w, err := sk.Put(ctx, jobs.Object{Key: key}, bytes.NewReader(data))
			if err != nil {
				t.Fatalf("put: %v", err)
			}
			if w.Parts != 3 {
				t.Fatalf("the object has %d parts, want 3", w.Parts)
			}

			// Pieces independent of the parts: 7 random cuts, none on a part boundary, and an
			// empty piece.
			cuts := []int64{0, int64(len(data))}
			for len(cuts) < 9 {
				if c := r.Int64N(int64(len(data))); c%(5<<20) != 0 {
					cuts = append(cuts, c)
				}
			}
			cuts = append(cuts, cuts[2])
			slices.Sort(cuts)
			combined, err := CombineChecksums(alg, combinePieces(alg, data, cuts))
			if err != nil {
				t.Fatal(err)
			}
			if want := combineSinkChecksum(alg, data); combined != want || w.Checksum != want {
				t.Fatalf("combined %s, sink wrote %s, whole object %s", combined, w.Checksum, want)
			}

			pick := func(crc64nvme, crc32c *string) string {
				if alg == ChecksumCRC32C {
					return aws.ToString(crc32c)
				}
				return aws.ToString(crc64nvme)
			}
			head, err := b.admin.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ChecksumMode: s3types.ChecksumModeEnabled})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d pieces cut at %v combine to %s; HeadObject: %s %s %s", len(cuts)-1, cuts, combined, head.ChecksumType, alg, pick(head.ChecksumCRC64NVME, head.ChecksumCRC32C))
			if got := pick(head.ChecksumCRC64NVME, head.ChecksumCRC32C); got != combined || head.ChecksumType != s3types.ChecksumTypeFullObject {
				t.Errorf("HeadObject: %s %q (type %q); combined %s, want type FULL_OBJECT", alg, got, head.ChecksumType, combined)
			}
			get, err := b.admin.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ChecksumMode: s3types.ChecksumModeEnabled})
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(get.Body)
			_ = get.Body.Close()
			if err != nil || !bytes.Equal(body, data) {
				t.Fatalf("GetObject: %d bytes, %v; want the %d written", len(body), err, len(data))
			}
			if got := pick(get.ChecksumCRC64NVME, get.ChecksumCRC32C); got != combined || get.ChecksumType != s3types.ChecksumTypeFullObject {
				t.Errorf("GetObject: %s %q (type %q); combined %s, want type FULL_OBJECT", alg, got, get.ChecksumType, combined)
			}
		})
	}
}

// 10,000 segments of 5 MiB (a 50 GB object); "mixed" sizes are random up to 5 GiB, so each
// x^(8n) takes several multiplications instead of one table entry.
func BenchmarkCombineChecksums(b *testing.B) {
	for _, alg := range combineAlgorithms {
		for _, sizes := range []string{"5MiB", "mixed"} {
			b.Run(fmt.Sprintf("%s/%s/10000", alg, sizes), func(b *testing.B) {
				r := rand.New(rand.NewPCG(5, 5))
				parts := make([]SegmentChecksum, 10_000)
				for i := range parts {
					raw := binary.BigEndian.AppendUint64(nil, r.Uint64()|1)
					if alg == ChecksumCRC32C {
						raw = raw[:4]
					}
					parts[i] = SegmentChecksum{Checksum: base64.StdEncoding.EncodeToString(raw), Size: 5 << 20}
					if sizes == "mixed" {
						parts[i].Size = 1 + r.Int64N(5<<30)
					}
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := CombineChecksums(alg, parts); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
