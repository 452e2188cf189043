// Package storage is pullgate's persistence: the names of what it keeps
// (verdicts, overrides, tags, leases, events, audit records) as types and
// small interfaces, one Open that returns each capability by name, and
// the content-addressed blob and manifest store (distribution v3's
// registry/storage over a driver from distribution's factory).
//
// The verdict store backends live in subpackages (storage/bolt, the
// embedded one; storage/redis, the shared one) and register themselves
// with Register, as distribution's drivers do with its factory; each
// passes storage/storetest. A backend must give a Store and a Locker; what
// it lacks beyond them (an event bus, a shared audit log) Open names in
// Stores.Without, so the server says at start-up what it runs without.
//
// The invariant it serves: the blob store holds only content that scanned
// clean. A BlobWriter makes nothing visible until Commit has verified digest
// and size; a failed Commit or a Cancel leaves nothing behind. Deciding what
// is clean is the caller's job: storage never imports scanner or proxy, never
// talks to an upstream registry, and never turns a backend error into "not
// found" (an outage must fail closed, not look like an absent verdict or
// override).
package storage
