package main

import (
	"context"
	"errors"
)

func (b *bench) runShareDB(ctx context.Context) (*benchResult, error) {
	return nil, errors.New("bench: --protocol sharedb is not built yet")
}
