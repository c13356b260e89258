package memstore_test

import (
	"testing"

	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/memstore"
	"github.com/tandemdocs/tandem/storage/storagetest"
)

func TestStore(t *testing.T) {
	storagetest.TestStore(t, func(t *testing.T) storage.Store { return memstore.New() })
}
