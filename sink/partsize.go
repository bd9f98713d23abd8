package sink

// S3's multipart limits.
const (
	// MaxParts is the most parts one multipart upload may have.
	MaxParts = 10_000
	// MinPartSize is the least size of every part but the last.
	MinPartSize = 5 << 20
	// MaxPartSize is the largest part S3 accepts.
	MaxPartSize = 5 << 30
	// partsPerTier is how many parts are uploaded at one size before the size doubles.
	partsPerTier = 1_000
)

// PartSize is the size of part n (1-based) of an upload whose first parts are base bytes.
//
// The length of an export is unknown until its stream ends, and S3 allows 10,000 parts. A
// fixed part size would cap an object at 10,000 x base (78 GiB at 8 MiB), while a large fixed
// size would cost every small export as much memory as the largest. So the size doubles every
// 1,000 parts: exports up to 1,000 x base (7.8 GiB at 8 MiB) use base-sized parts only, and
// 10,000 parts hold 1,023,000 x base bytes (7.8 TiB at 8 MiB, 4.9 TiB at the 5 MiB minimum),
// with parts never above 5 GiB. At 8 MiB a part reaches 1 GiB only past 992 GiB.
func PartSize(base int64, n int) int64 { return partSize(base, n, partsPerTier) }

func partSize(base int64, n, perTier int) int64 {
	base = min(max(base, MinPartSize), MaxPartSize)
	tier := (n - 1) / perTier
	if tier < 0 {
		tier = 0
	}
	size := base
	for range tier {
		if size >= MaxPartSize/2 {
			return MaxPartSize
		}
		size *= 2
	}
	return size
}

// Capacity is the largest object the policy of base can upload in MaxParts parts.
func Capacity(base int64) int64 {
	var total int64
	for tier := range MaxParts / partsPerTier {
		total += partsPerTier * PartSize(base, tier*partsPerTier+1)
	}
	return total
}
