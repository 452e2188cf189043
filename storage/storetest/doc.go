// Package storetest is the conformance suite every storage backend must
// pass (Run for a Store, RunLocker for a Locker, RunAudit for an AuditLog),
// so the Redis and embedded stores cannot drift apart, with the records of
// earlier releases they must still read (LegacyOverrides). It is test
// code: it must never be imported by anything but tests.
package storetest
