// Package redis is the shared verdict store for several replicas: verdicts,
// links, overrides, last known tags, ingest leases (with release
// notices), the event bus and the audit streams, all on one Redis under
// the "pullgate:" prefix. It registers with storage as "redis" and passes
// storetest.Run, storetest.RunLocker and storetest.RunAudit.
//
// It must never show the URL's password, never turn an outage into "not
// found", and must keep the key layout and JSON of earlier releases.
package redis
