package sink

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/verifiedfan/export-service/jobs"
)

// BenchmarkS3Put streams 256 MiB into the local SeaweedFS with the worker's defaults (8 MiB
// parts, 4 uploading while the next fills) and reports the parts and the most bytes the part
// buffers held. Run it with the stack up:
//
//	go test -run '^$' -bench S3Put -benchtime 3x ./sink/
func BenchmarkS3Put(b *testing.B) {
	for _, cfg := range []struct {
		part     int64
		conc     int
		checksum string
	}{{8 << 20, 4, ChecksumCRC64NVME}, {8 << 20, 4, ChecksumCRC32C}, {8 << 20, 1, ChecksumCRC32C}, {16 << 20, 4, ChecksumCRC32C}} {
		b.Run(fmt.Sprintf("part=%dMiB/concurrency=%d/%s", cfg.part>>20, cfg.conc, cfg.checksum), func(b *testing.B) {
			bb := setup(b)
			data := randomBytes(42, 256<<20)
			sk := NewS3(bb.s3Client(bb.base.Credentials, nil), bb.env["EXPORT_BUCKET"], S3Options{PartSize: cfg.part, Concurrency: cfg.conc, Checksum: cfg.checksum})
			b.SetBytes(int64(len(data)))
			var stats putStats
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for i := range b.N {
				key := fmt.Sprintf("%sbench-%d.gz", bb.prefix, i)
				var err error
				if _, stats, err = sk.putReader(context.Background(), jobs.Object{Key: key}, onlyReader{bytes.NewReader(data)}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				_, _ = bb.admin.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(bb.env["EXPORT_BUCKET"]), Key: aws.String(key)})
				b.StartTimer()
			}
			b.StopTimer()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(stats.Parts), "parts")
			b.ReportMetric(float64(stats.PeakBuffered)/(1<<20), "peak-buffer-MiB")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/(1<<20), "alloc-MiB/op")
		})
	}
}
