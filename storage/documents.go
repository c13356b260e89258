package storage

import "context"

// EachDocument calls fn for every document, in id order, a page at a time.
// It stops at the first error, from the store or from fn.
func EachDocument(ctx context.Context, s Store, fn func(Document) error) error {
	after := ""
	for {
		docs, next, err := s.ListDocuments(ctx, ListOptions{After: after, Limit: 1000})
		if err != nil {
			return err
		}
		for _, d := range docs {
			if err := fn(d); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		after = next
	}
}

// CountDocuments returns how many documents s holds.
func CountDocuments(ctx context.Context, s Store) (int, error) {
	n := 0
	err := EachDocument(ctx, s, func(Document) error { n++; return nil })
	return n, err
}

// Retain applies a retention policy to every document: records older than
// keep revisions behind the head are compacted. keep <= 0 does nothing.
func Retain(ctx context.Context, s Store, keep int64) error {
	if keep <= 0 {
		return nil
	}
	return EachDocument(ctx, s, func(d Document) error {
		if before := d.Head - keep; before > d.Oldest {
			return s.Compact(ctx, d.ID, before)
		}
		return nil
	})
}
