package bolt

import (
	"context"

	"github.com/pullgate/pullgate/storage"
)

// Name is the name the embedded store registers under.
const Name = "embedded"

func init() { storage.Register(Name, open) }

// open is the embedded backend: verdicts, overrides, tags and leases in
// one bbolt file. It has no event bus and no shared audit log: one
// process holds the file.
func open(_ context.Context, c storage.Config) (storage.Backend, error) {
	s, err := Open(c.Path)
	if err != nil {
		return storage.Backend{}, err
	}
	return storage.Backend{Store: s, Locks: s}, nil
}
