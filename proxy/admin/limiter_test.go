package admin

import (
	"fmt"
	"testing"
	"time"
)

// An attacker cycling through addresses cannot flush the table: 10,000
// failures from as many addresses leave the attacker's own count (and its
// refusal) as they were, and the table keeps its size.
func TestLoginLimiterCannotBeFlushed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int // the attacker's, before the flood
	}{
		{"busy", maxAddressFailures - 1},
		{"refused", maxAddressFailures},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l loginLimiter
			for range tc.failures {
				l.fail("10.9.9.9", "")
			}
			for i := range maxTracked {
				l.fail(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "")
			}
			if n := len(l.addresses.entries); n > maxTracked {
				t.Fatalf("%d addresses tracked, over %d", n, maxTracked)
			}
			if tc.failures < maxAddressFailures {
				if l.wait("10.9.9.9", "", false) != 0 {
					t.Fatal("refused before the limit")
				}
				l.fail("10.9.9.9", "")
			}
			if l.wait("10.9.9.9", "", false) <= 0 {
				t.Fatal("the flood reset the attacker's failures")
			}
		})
	}
}

// A table full of refusing entries refuses what it cannot track, rather
// than forget one.
func TestLoginLimiterFailsClosedWhenFull(t *testing.T) {
	var l loginLimiter
	for i := range maxTracked {
		for range maxTokenFailures {
			l.fail("10.0.0.1", fmt.Sprintf("key-%d", i))
		}
	}
	l.fail("10.0.0.2", "key-new")
	if l.wait("10.0.0.3", "key-other", false) <= 0 {
		t.Fatal("a token the full table cannot track is let through")
	}
	if l.wait("10.0.0.3", "key-1", false) <= 0 {
		t.Fatal("a refused token was forgotten")
	}
}

func TestLoginLimiterForgetsOldFailures(t *testing.T) {
	var l loginLimiter
	for range maxTokenFailures {
		l.fail("10.0.0.1", "bad")
	}
	if l.wait("10.0.0.1", "bad", false) <= 0 || l.wait("10.0.0.1", "good", false) != 0 || l.wait("10.0.0.2", "", false) != 0 {
		t.Fatal("the limit applies to the failing token only")
	}
	// Age the failures past the window.
	for _, e := range []*failureTable{&l.addresses, &l.tokens} {
		for _, el := range e.entries {
			el.Value.(*failures).start = time.Now().Add(-2 * failureWindow)
		}
	}
	if l.wait("10.0.0.1", "bad", false) != 0 {
		t.Fatal("failures older than the window still count")
	}
}
