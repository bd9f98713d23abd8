package jobs_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/sink"
)

// BenchmarkPipelineMemory runs concurrent export jobs the way the worker does (in-memory raw
// BSON -> CSV encoder -> gzip level 6 -> the S3 sink with the worker's defaults, 8 MiB parts,
// into the local SeaweedFS) and reports, per round of jobs: the peak of the heap's objects
// (sampled every 2 ms), the peak RSS of the process (VmHWM, reset before the round), and per
// job the bytes and objects allocated and the CPU time of the whole process. It asserts nothing
// about time. Run it alone, with the stack up, under the memory limit of the container:
//
//	GOMEMLIMIT=256MiB go test -run '^$' -bench PipelineMemory -benchtime 3x ./jobs/
func BenchmarkPipelineMemory(b *testing.B) {
	for _, tc := range []struct {
		name       string
		jobs, rows int
	}{
		{"small/64x50rows", 64, 50},
		{"large/4x200krows", 4, 200_000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			st := stacktest.New(b)
			client := s3.NewFromConfig(aws.Config{Region: st.Env["AWS_REGION"]}, func(o *s3.Options) { *o = st.S3.Options() })
			bucket := st.Env["EXPORT_BUCKET"]
			sk := sink.NewS3(client, bucket, sink.S3Options{})
			docs := rawRegistrations(b, 2000)
			newEnc := csvEncoder(b)
			prefix := "benchtest/" + stacktest.RandomID() + "/"
			b.Cleanup(func() { deletePrefix(st, bucket, prefix) })

			var peakHeap, peakRSS, allocBytes, allocs uint64
			var cpu time.Duration
			var gz atomic.Int64
			for round := 0; b.Loop(); round++ {
				b.StopTimer()
				runtime.GC()
				resetPeakRSS()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				cpuBefore := processCPU()
				stop := samplePeakHeap()
				b.StartTimer()

				var wg sync.WaitGroup
				var failed atomic.Pointer[error]
				for i := range tc.jobs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						key := fmt.Sprintf("%s%d-%d.csv.gz", prefix, round, i)
						stats, _, err := jobs.Stream(context.Background(), &memSource{docs: docs, n: tc.rows}, newEnc, sk, jobs.Object{Key: key}, jobs.PipelineOptions{})
						if err != nil {
							failed.Store(&err)
						}
						gz.Add(stats.BytesCompressed)
					}()
				}
				wg.Wait()

				b.StopTimer()
				peakHeap = max(peakHeap, stop())
				peakRSS = max(peakRSS, readPeakRSS())
				cpu += processCPU() - cpuBefore
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				allocBytes += after.TotalAlloc - before.TotalAlloc
				allocs += after.Mallocs - before.Mallocs
				if p := failed.Load(); p != nil {
					b.Fatal(*p)
				}
				b.StartTimer()
			}
			n := float64(b.N * tc.jobs)
			b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(peakRSS)/(1<<20), "peak-RSS-MiB")
			b.ReportMetric(float64(allocBytes)/n/(1<<20), "alloc-MiB/job")
			b.ReportMetric(float64(allocs)/n, "allocs/job")
			b.ReportMetric(float64(cpu.Microseconds())/1000/n, "cpu-ms/job")
			b.ReportMetric(float64(gz.Load())/n/(1<<20), "gz-MiB/job")
		})
	}
}

// samplePeakHeap samples the bytes of heap objects (live and not yet collected) until the
// returned function is called, which returns their peak.
func samplePeakHeap() func() uint64 {
	done := make(chan struct{})
	result := make(chan uint64)
	go func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak uint64
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-done:
				result <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); return <-result }
}

// resetPeakRSS resets the process's VmHWM (Linux: writing 5 to clear_refs).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// readPeakRSS is the process's VmHWM in bytes (0 where /proc is missing).
func readPeakRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// processCPU is the user and system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func deletePrefix(st *stacktest.Stack, bucket, prefix string) {
	ctx := context.Background()
	p := s3.NewListObjectsV2Paginator(st.S3, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return
		}
		for _, o := range page.Contents {
			_, _ = st.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: o.Key})
		}
	}
}
