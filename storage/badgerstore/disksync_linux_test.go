package badgerstore_test

import (
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
)

// BenchmarkDiskSync is the disk's own ceiling for BenchmarkCommit: a
// 200-byte write and a sync of one file in the same kind of directory,
// with no store around it. fsync-append grows the file at every write (the
// inode changes too, as for a naive log); fdatasync-prealloc writes into a
// file allocated beforehand and syncs only the data, which is the best a
// write-ahead log can do. Badger's write-ahead log is preallocated and
// synced with msync, which the kernel treats as the latter.
func BenchmarkDiskSync(b *testing.B) {
	for _, c := range []struct {
		name     string
		prealloc bool
		sync     func(*os.File) error
	}{
		{"fsync-append", false, (*os.File).Sync},
		{"fdatasync-prealloc", true, func(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			f, err := os.Create(b.TempDir() + "/sync")
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, 200)
			if c.prealloc {
				if err := f.Truncate(int64(b.N+1) * int64(len(buf))); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := f.WriteAt(buf, int64(i)*int64(len(buf))); err != nil {
					b.Fatal(err)
				}
				if err := c.sync(f); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			reportRates(b, b.N, b.N)
			// The tail is what a document waiting on a sync sees.
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
			b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms")
		})
	}
}
