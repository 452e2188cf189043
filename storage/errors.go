package storage

import "errors"

var (
	// ErrNotFound is wrapped by every "absent" answer: a blob, manifest,
	// verdict, override or tag that is not stored. Backend failures never
	// wrap it.
	ErrNotFound = errors.New("not found")

	// ErrInvalid is wrapped when an argument is refused before anything is
	// stored: a malformed digest, an empty ruleset id, an unknown status.
	ErrInvalid = errors.New("invalid argument")

	// ErrLimit is wrapped when a bound would be passed, such as MaxLinks
	// repositories for one digest.
	ErrLimit = errors.New("limit reached")

	// ErrDigestMismatch is wrapped when written content does not hash to the
	// digest it was committed or stored under.
	ErrDigestMismatch = errors.New("digest mismatch")

	// ErrSizeMismatch is wrapped when the number of bytes written differs
	// from the size a blob was committed with.
	ErrSizeMismatch = errors.New("size mismatch")
)
