// Package backupfile is the framing of Tandem's backup files, in one place
// for the store that writes them (storage/badgerstore), the admin endpoint
// that streams them and the tools that download, check and restore them
// (cmd/tandem).
//
// A backup file is a sequence of frames, each an 8-byte little-endian
// length and a body: Badger's backup format, whose bodies are KV lists
// (protobuf), so that Badger's own tools read it too. A Tandem backup ends
// with one more frame, the trailer: a KV list of one key, TrailerKey, whose
// value says the data format and the versions the backup covers. A file
// cut between two frames has no trailer and is refused, instead of
// restoring part of a backup without a word.
//
// What is checked here is the framing and the trailer; the frames' bodies
// are the store's business.
package backupfile

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dgraph-io/badger/v4/pb"
	"google.golang.org/protobuf/proto"
)

// MaxFrame bounds one frame. Badger writes lists of a few MiB; a larger
// length prefix means a damaged or foreign file, and must not become an
// allocation of that size.
const MaxFrame = 256 << 20

// maxTrailer bounds the frame kept as the possible trailer.
const maxTrailer = 4096

// TrailerKey is the key of the trailer's one entry (a store that loads the
// file as data sees it as an ordinary key).
var TrailerKey = []byte("m/backup")

// Trailer is what a backup file's last frame says of it.
type Trailer struct {
	// Format is the store's data format version.
	Format string `json:"format"`
	// Since is the version the backup starts at (0: a full backup); Next
	// the one to pass as since to the next, incremental, backup.
	Since uint64    `json:"since"`
	Next  uint64    `json:"next"`
	Time  time.Time `json:"time"`
}

// WriteTrailer ends a backup with its trailer frame.
func WriteTrailer(w io.Writer, t Trailer) error {
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	list := &pb.KVList{Kv: []*pb.KV{{Key: TrailerKey, Value: v, Version: max(t.Next, 2) - 1}}}
	b, err := proto.Marshal(list)
	if err != nil {
		return err
	}
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], uint64(len(b)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// ErrNoTrailer: the data does not end with a trailer frame.
var ErrNoTrailer = errors.New("it does not end with a Tandem backup trailer: it is truncated (cut between two frames), or not a Tandem backup")

// parseTrailer reads a trailer from the body of a last frame.
func parseTrailer(body []byte) (Trailer, error) {
	var list pb.KVList
	var t Trailer
	if body == nil || proto.Unmarshal(body, &list) != nil || len(list.Kv) != 1 || string(list.Kv[0].Key) != string(TrailerKey) {
		return t, ErrNoTrailer
	}
	if json.Unmarshal(list.Kv[0].Value, &t) != nil {
		return t, ErrNoTrailer
	}
	return t, nil
}

// Check reports whether the backup is of the data format this build
// reads.
func (t Trailer) Check(format string) error {
	if t.Format != format {
		return fmt.Errorf("a backup of data format %q; this build reads %q", t.Format, format)
	}
	return nil
}

// frames follows frame boundaries in a stream, keeping the last frame if it
// is small enough to be the trailer.
type frames struct {
	hdr   [8]byte
	inHdr int    // header bytes seen of the current frame
	left  uint64 // body bytes left of the current frame
	small bool
	body  []byte
	last  []byte // the last complete frame's body, if small (else nil)
	total int64
}

// header takes a complete header: the error says why the frame is refused.
func (f *frames) header(offset int64) error {
	f.left = binary.LittleEndian.Uint64(f.hdr[:])
	if f.left > MaxFrame {
		return fmt.Errorf("a frame of %d bytes at offset %d: not a Tandem backup, or damaged", f.left, offset)
	}
	f.small, f.body = f.left <= maxTrailer, f.body[:0]
	if f.left == 0 {
		f.inHdr, f.last = 0, nil
	}
	return nil
}

// bodyBytes takes p, all of it inside the current frame's body.
func (f *frames) bodyBytes(p []byte) {
	if f.small {
		f.body = append(f.body, p...)
	}
	f.left -= uint64(len(p))
	if f.left == 0 {
		f.inHdr, f.last = 0, nil
		if f.small {
			f.last = append([]byte(nil), f.body...)
		}
	}
}

// end checks the stream ended after a whole trailer.
func (f *frames) end() (Trailer, error) {
	switch {
	case f.total == 0:
		return Trailer{}, errors.New("it is empty")
	case f.inHdr > 0:
		return Trailer{}, fmt.Errorf("it is truncated: it ends inside a frame (after %d bytes)", f.total)
	}
	return parseTrailer(f.last)
}

// Tracker checks a backup as it is written (an io.Writer beside the real
// destination: a download, a file): Finish says whether it was whole.
type Tracker struct {
	f   frames
	bad error
}

// Write implements io.Writer; it never fails (Finish reports).
func (t *Tracker) Write(p []byte) (int, error) {
	n := len(p)
	f := &t.f
	f.total += int64(n)
	for len(p) > 0 && t.bad == nil {
		if f.inHdr < 8 {
			k := copy(f.hdr[f.inHdr:], p)
			f.inHdr += k
			p = p[k:]
			if f.inHdr == 8 {
				t.bad = f.header(f.total - int64(len(p)) - 8)
			}
			continue
		}
		k := int(min(uint64(len(p)), f.left))
		f.bodyBytes(p[:k])
		p = p[k:]
	}
	return n, nil
}

// Finish returns the trailer of a whole backup, or why it is not one.
func (t *Tracker) Finish() (Trailer, error) {
	if t.bad != nil {
		return Trailer{}, t.bad
	}
	return t.f.end()
}

// Reader passes a backup through to whoever loads it, checking each
// frame's length before it is trusted (a frame is handed out no further
// than its end, so every header is seen whole here first); Trailer, after
// io.EOF, says whether the stream was whole.
type Reader struct {
	r io.Reader
	f frames
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	f := &r.f
	limit := len(p)
	if f.inHdr < 8 {
		limit = min(limit, 8-f.inHdr)
	} else {
		limit = int(min(uint64(limit), f.left))
	}
	n, err := r.r.Read(p[:limit])
	f.total += int64(n)
	if f.inHdr < 8 {
		copy(f.hdr[f.inHdr:], p[:n])
		f.inHdr += n
		if f.inHdr == 8 {
			if herr := f.header(f.total - 8); herr != nil {
				return n, herr
			}
		}
	} else {
		f.bodyBytes(p[:n])
	}
	if err == io.EOF && (f.inHdr > 0 || f.left > 0) {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// Trailer returns the trailer of a stream read to its end, or why it was
// not whole.
func (r *Reader) Trailer() (Trailer, error) { return r.f.end() }

// ScanFile checks a backup file's frames without reading their bodies (it
// seeks past them) and returns its trailer.
func ScanFile(name string) (Trailer, error) {
	file, err := os.Open(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Trailer{}, fmt.Errorf("backup file %s does not exist", name)
		}
		return Trailer{}, fmt.Errorf("backup file: %w", err)
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return Trailer{}, err
	}
	if fi.IsDir() {
		return Trailer{}, fmt.Errorf("%s is a directory, not a backup file", name)
	}
	size := fi.Size()
	if size == 0 {
		return Trailer{}, fmt.Errorf("backup file %s is empty", name)
	}
	var off int64
	var last []byte
	var hdr [8]byte
	for off < size {
		if size-off < 8 {
			if off == 0 {
				return Trailer{}, fmt.Errorf("%s is not a Tandem backup file (%d bytes: too short for one)", name, size)
			}
			return Trailer{}, fmt.Errorf("backup file %s is truncated: it ends inside a frame header (%d bytes)", name, size)
		}
		if _, err := file.ReadAt(hdr[:], off); err != nil {
			return Trailer{}, fmt.Errorf("backup file %s: %w", name, err)
		}
		n := binary.LittleEndian.Uint64(hdr[:])
		if n > MaxFrame {
			return Trailer{}, fmt.Errorf("%s is not a Tandem backup file (at offset %d, a frame of %d bytes)", name, off, n)
		}
		if int64(n) > size-off-8 {
			if off == 0 {
				return Trailer{}, fmt.Errorf("%s is truncated, or not a Tandem backup file: its first frame needs %d bytes, the file has %d", name, n, size-8)
			}
			return Trailer{}, fmt.Errorf("backup file %s is truncated: its frame at offset %d needs %d bytes, the file has %d", name, off, n, size-off-8)
		}
		last = nil
		if n <= maxTrailer {
			last = make([]byte, n)
			if _, err := file.ReadAt(last, off+8); err != nil {
				return Trailer{}, fmt.Errorf("backup file %s: %w", name, err)
			}
		}
		off += 8 + int64(n)
	}
	t, err := parseTrailer(last)
	if err != nil {
		return Trailer{}, fmt.Errorf("backup file %s: %w", name, err)
	}
	return t, nil
}

// CheckChain checks that files, with their trailers, restore in this
// order: a full backup first, then incrementals each starting at or before
// where the one before it ended.
func CheckChain(files []string, trailers []Trailer) error {
	for i, t := range trailers {
		switch {
		case i == 0 && t.Since != 0:
			return fmt.Errorf("%s is an incremental backup (since version %d): restore starts with a full backup, then its incrementals in order", files[i], t.Since)
		case i > 0 && t.Since > trailers[i-1].Next:
			return fmt.Errorf("%s starts at version %d but %s ends at %d: a backup in between is missing (or the files are out of order)",
				files[i], t.Since, files[i-1], trailers[i-1].Next)
		}
	}
	return nil
}
