// Package testsync holds the two things concurrent tests keep needing: a
// wait on a condition with a deadline (WaitFor, Until) instead of a sleep,
// and a buffer that many goroutines may write to at once (Buffer), for logs
// a test reads back.
//
// It is for tests only. It never sleeps for a fixed time to let something
// happen: every wait ends as soon as its condition holds, and a failed wait
// says what was awaited.
package testsync
