package storage

import "context"

// Retain applies a retention policy to every document: records older than
// keep revisions behind the head are compacted. keep <= 0 does nothing.
func Retain(ctx context.Context, s Store, keep int64) error {
	if keep <= 0 {
		return nil
	}
	after := ""
	for {
		docs, next, err := s.ListDocuments(ctx, ListOptions{After: after, Limit: 100})
		if err != nil {
			return err
		}
		for _, d := range docs {
			if before := d.Head - keep; before > d.Oldest {
				if err := s.Compact(ctx, d.ID, before); err != nil {
					return err
				}
			}
		}
		if next == "" {
			return nil
		}
		after = next
	}
}
