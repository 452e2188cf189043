// Package bolt is the embedded verdict store: verdicts, links, overrides,
// last known tags and ingest leases in one bbolt file on local disk, for a
// single node with nothing else to run. It registers with storage as
// "embedded" and passes storetest.Run and storetest.RunLocker.
//
// One process holds the file, so leases and their release watches live in
// that process's memory, and there is no event bus and no shared audit
// log. It must never turn a failure into "not found", and must keep the
// bucket layout and JSON of the files earlier releases wrote.
package bolt
