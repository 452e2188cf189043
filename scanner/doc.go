// Package scanner decides whether container image content carries
// cryptominers or other malware. It compiles YARA rules (an embedded
// default ruleset plus operator files), runs them in a bounded pool of
// workers, walks layer blobs as a stream (gzip, zstd or plain tar) and
// scans image config blobs.
//
// scanner is content analysis only: it never touches the network, never
// talks to Redis or any store, and never imports other pullgate packages.
// Callers hand it bytes and get back findings; what to do about them is
// the caller's decision.
//
// Every limit fails closed: a layer that is too big, has too many files,
// takes too long or cannot be decoded produces an error (wrapping ErrLimit
// or ErrCorrupt), never a clean Result.
package scanner
