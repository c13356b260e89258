package collab

import (
	"errors"
	"fmt"

	"github.com/tandemdocs/tandem/storage"
)

// ---------------------------------------------------------------------------
// History.

// readHistory asks for the records from rev to the start of the log.
func (c *core) readHistory(from int64) {
	if c.readingBack {
		return // the drain after it asks again for what is still missing
	}
	c.readingBack, c.backFrom = true, from
	c.out.Read = append(c.out.Read, readRequest{From: from, To: c.logStart})
}

func (c *core) historyError(rev int64) *Error {
	if errors.Is(c.histErr, storage.ErrCompacted) {
		return protoErr(CodeRevTooOld, "revision %d is no longer retained: resync", rev)
	}
	return protoErr(CodeInternal, "could not read history")
}

func (c *core) historyRead(ev evRecords) {
	c.readingBack = false
	err := ev.Err
	if err == nil && (ev.From != c.backFrom || int64(len(ev.Records)) != c.logStart-ev.From) {
		err = fmt.Errorf("%w: history read of %d..%d returned %d records", storage.ErrCorrupt, ev.From, c.logStart, len(ev.Records))
	}
	if err == nil {
		recs := make([]committed, len(ev.Records))
		n := c.logStartLen
		for i := len(ev.Records) - 1; i >= 0; i-- {
			r := ev.Records[i]
			if r.Rev != ev.From+1+int64(i) {
				err = fmt.Errorf("%w: history read: record %d where %d was expected", storage.ErrCorrupt, r.Rev, ev.From+1+int64(i))
				break
			}
			recs[i] = committed{Record: r, Len: n}
			n -= lenDelta(r.Op)
		}
		if err == nil {
			c.log = append(recs, c.log...)
			c.logStart, c.logStartLen = ev.From, n
		}
	}
	if err != nil {
		if !errors.Is(err, storage.ErrCompacted) {
			c.out.Errs = append(c.out.Errs, fmt.Errorf("read history from %d: %w", ev.From, err))
		}
		// Everything waiting for history gets its answer now; later
		// requests try the read again.
		c.histErr = err
		c.drain()
		c.histErr = nil
		return
	}
	c.drain()
}
