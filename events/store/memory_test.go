package store_test

import (
	"testing"

	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	m := store.NewMemory()
	storetest.Run(t, storetest.Harness{
		Store:      func(*testing.T) store.Store { return m },
		PublishRaw: func(_ *testing.T, subject string, data []byte) { m.PublishRaw(subject, data) },
	})
}
