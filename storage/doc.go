// Package storage is pullgate's persistence: the content-addressed blob and
// manifest store (distribution v3's registry/storage over a storage driver)
// and the verdict store (scan verdicts, operator overrides, last known tags),
// with a Redis implementation for shared deployments and an embedded bbolt
// one for a single node. Both verdict stores pass storage/storetest.
//
// The invariant it serves: the blob store holds only content that scanned
// clean. A BlobWriter makes nothing visible until Commit has verified digest
// and size; a failed Commit or a Cancel leaves nothing behind. Deciding what
// is clean is the caller's job: storage never imports scanner or proxy, never
// talks to an upstream registry, and never turns a backend error into "not
// found" (an outage must fail closed, not look like an absent verdict or
// override).
package storage
