package storage

import (
	"testing"
	"time"
)

// SetBoltOpenTimeout shortens the lock wait for the duration of a test.
func SetBoltOpenTimeout(t *testing.T, d time.Duration) {
	old := boltOpenTimeout
	boltOpenTimeout = d
	t.Cleanup(func() { boltOpenTimeout = old })
}
