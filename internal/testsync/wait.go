package testsync

import (
	"testing"
	"time"
)

// interval is how often a condition is polled: short enough that a test
// does not idle, long enough that a cheap condition costs nothing.
const interval = 5 * time.Millisecond

// Until polls cond until it holds or deadline has passed, and reports
// whether it held. The condition is checked once more at the deadline, so a
// wait that ends just as the condition comes true is not a failure. Use it
// where not happening is the expected outcome; use WaitFor otherwise.
func Until(deadline time.Duration, cond func() bool) bool {
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-timer.C:
			return cond()
		case <-tick.C:
		}
	}
	return true
}

// WaitFor polls cond until it holds, and fails the test if it does not
// within deadline. what completes "timed out after 10s waiting for ...".
// Call it from the test's own goroutine, as t.Fatalf requires.
func WaitFor(t testing.TB, deadline time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Until(deadline, cond) {
		t.Fatalf("timed out after %s waiting for %s", deadline, what)
	}
}
