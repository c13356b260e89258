package backupfile_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/backupfile"
	"github.com/tandemdocs/tandem/storage/badgerstore"
)

// realBackup writes a full backup of a small Badger store.
func realBackup(t testing.TB) ([]byte, uint64) {
	t.Helper()
	s, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 5 {
		if err := s.CreateDocument(t.Context(), storage.Document{ID: fmt.Sprint("doc-", i), Title: "t"}, strings.Repeat("text ", 100)); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	next, err := s.Backup(t.Context(), &buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), next
}

// check runs the three checks on data: the Tracker (a download, in uneven
// writes), the Reader (a restore) and ScanFile (a file).
func check(t *testing.T, data []byte) (tracked backupfile.Trailer, terr, rerr, serr error) {
	t.Helper()
	var tr backupfile.Tracker
	for p := data; len(p) > 0; {
		n := min(len(p), 1+len(p)%7)
		tr.Write(p[:n])
		p = p[n:]
	}
	tracked, terr = tr.Finish()
	r := backupfile.NewReader(bytes.NewReader(data))
	if _, err := io.Copy(io.Discard, oneByteReader{r}); err != nil {
		rerr = err
	} else {
		_, rerr = r.Trailer()
	}
	name := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, serr = backupfile.ScanFile(name)
	return
}

// oneByteReader reads a byte at a time: frame boundaries fall anywhere.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), 1)]) }

// TestChecksAgree: a whole backup passes every check with its trailer;
// every cut of it fails every check.
func TestChecksAgree(t *testing.T) {
	b, next := realBackup(t)
	got, terr, rerr, serr := check(t, b)
	if terr != nil || rerr != nil || serr != nil || got.Next != next || got.Since != 0 || got.Check(badgerstore.FormatVersion) != nil {
		t.Fatalf("whole backup: %+v, tracker %v, reader %v, file %v", got, terr, rerr, serr)
	}
	for _, n := range []int{0, 1, 7, 8, 9, len(b) / 3, len(b) - 9, len(b) - 8, len(b) - 1} {
		if _, terr, rerr, serr := check(t, b[:n]); terr == nil || rerr == nil || serr == nil {
			t.Errorf("cut at %d of %d bytes: tracker %v, reader %v, file %v", n, len(b), terr, rerr, serr)
		}
	}
	// A frame longer than any backup's is refused before it is read.
	huge := append([]byte{0, 0, 0, 0, 0, 0, 0, 1}, b...)
	if _, terr, rerr, serr := check(t, huge); terr == nil || rerr == nil || serr == nil {
		t.Errorf("a huge frame: tracker %v, reader %v, file %v", terr, rerr, serr)
	}
	if err := (backupfile.Trailer{Format: "0"}).Check(badgerstore.FormatVersion); err == nil {
		t.Error("another data format passed")
	}
}

func TestCheckChain(t *testing.T) {
	files := []string{"full", "incr1", "incr2"}
	ok := []backupfile.Trailer{{Since: 0, Next: 10}, {Since: 10, Next: 20}, {Since: 15, Next: 30}}
	if err := backupfile.CheckChain(files, ok); err != nil {
		t.Fatal(err)
	}
	if err := backupfile.CheckChain(files[1:], ok[1:]); err == nil || !strings.Contains(err.Error(), "incremental") {
		t.Errorf("starting with an incremental: %v", err)
	}
	gap := []backupfile.Trailer{{Since: 0, Next: 10}, {Since: 11, Next: 20}}
	if err := backupfile.CheckChain(files[:2], gap); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a gap: %v", err)
	}
}

// FuzzReader: whatever the bytes, the Reader and the Tracker neither
// panic nor take for whole anything without a trailer, and agree.
func FuzzReader(f *testing.F) {
	b, _ := realBackup(f)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte{})
	f.Add([]byte{8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := backupfile.NewReader(bytes.NewReader(data))
		_, err := io.Copy(io.Discard, r)
		var rt backupfile.Trailer
		if err == nil {
			rt, err = r.Trailer()
		}
		var tr backupfile.Tracker
		tr.Write(data)
		tt, terr := tr.Finish()
		if (err == nil) != (terr == nil) || (err == nil && rt != tt) {
			t.Fatalf("reader %+v %v, tracker %+v %v", rt, err, tt, terr)
		}
	})
}
