package admin

import (
	"container/list"
	"encoding/hex"
	"sync"
	"time"
)

// loginLimiter slows down token guessing and cuts off clients that keep
// sending a wrong token, without letting either be turned against the
// operator:
//
//   - A presented token (known by a short hash, never the token) that failed
//     maxTokenFailures times in a window is refused from everywhere, so a
//     script or a reverse proxy replaying a stale token is cut off while the
//     good token from the same address keeps working.
//   - An address that failed maxAddressFailures times in a window is refused
//     with any token that does not start as a configured token does (its
//     first tokenPrefix bytes): this bounds the guesses one address can
//     make, while a stranger behind the same reverse proxy or NAT cannot
//     lock the operator out, whose token starts right.
//
// Both tables have a fixed size and cannot be flushed (see failureTable).
type loginLimiter struct {
	mu        sync.Mutex
	addresses failureTable
	tokens    failureTable
}

const (
	maxTokenFailures   = 10
	maxAddressFailures = 100
	failureWindow      = time.Minute
	// maxTracked bounds the entries of each table.
	maxTracked = 10000
)

// tokenKey is the short hash by which the limiter knows a presented token.
func tokenKey(p principal) string { return hex.EncodeToString(p.key[:8]) }

// wait is how long a request from client presenting the token known by key
// ("" for none) must wait before trying again (0: go ahead). It is decided
// before the token is checked, so its answer says nothing about the token.
func (l *loginLimiter) wait(client, key string, known bool) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	var w time.Duration
	if !known {
		w = l.addresses.wait(client, maxAddressFailures, now)
	}
	if key != "" {
		w = max(w, l.tokens.wait(key, maxTokenFailures, now))
	}
	return w
}

// fail counts a failed login from client with the token known by key.
func (l *loginLimiter) fail(client, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.addresses.fail(client, maxAddressFailures, now)
	if key != "" {
		l.tokens.fail(key, maxTokenFailures, now)
	}
}

// failureTable counts failures per key in fixed windows, in at most
// maxTracked entries. It is a segmented LRU: a key's first failure puts it
// on probation, a second one makes it protected. A full table evicts the
// probation entry failed least recently, and a protected one only when
// probation is empty; an entry at its limit (refusing) is never evicted.
// So an attacker cycling through many addresses, one failure each, only
// churns probation: it cannot push out a busy address or reset one that is
// refused. When the entries failed least recently are all refusing, a
// full table fails closed: a key it cannot track is refused until an
// entry's window ends.
type failureTable struct {
	entries              map[string]*list.Element
	probation, protected list.List // of *failures, most recent failure first
	saturatedUntil       time.Time
}

type failures struct {
	key   string
	count int
	start time.Time // of the window the count belongs to
	guard bool      // on the protected list
}

// current is the count within the window that is running at now.
func (f *failures) current(now time.Time) int {
	if now.Sub(f.start) >= failureWindow {
		return 0
	}
	return f.count
}

func (t *failureTable) wait(key string, limit int, now time.Time) time.Duration {
	e, ok := t.entries[key]
	if !ok {
		if now.Before(t.saturatedUntil) {
			return t.saturatedUntil.Sub(now)
		}
		return 0
	}
	f := e.Value.(*failures)
	if f.current(now) < limit {
		return 0
	}
	return f.start.Add(failureWindow).Sub(now)
}

func (t *failureTable) fail(key string, limit int, now time.Time) {
	if t.entries == nil {
		t.entries = make(map[string]*list.Element)
	}
	if e, ok := t.entries[key]; ok {
		f := e.Value.(*failures)
		if f.current(now) == 0 {
			f.count, f.start = 0, now
		}
		f.count++
		if !f.guard && f.count > 1 {
			t.probation.Remove(e)
			f.guard = true
			t.entries[key] = t.protected.PushFront(f)
			return
		}
		if f.guard {
			t.protected.MoveToFront(e)
		} else {
			t.probation.MoveToFront(e)
		}
		return
	}
	if len(t.entries) >= maxTracked && !t.evict(limit, now) {
		// Every entry is refusing: refuse what cannot be tracked until
		// the oldest window ends, rather than forget a refused key.
		oldest := t.protected.Back().Value.(*failures)
		t.saturatedUntil = oldest.start.Add(failureWindow)
		return
	}
	t.entries[key] = t.probation.PushFront(&failures{key: key, count: 1, start: now})
}

// evict removes one entry that is not refusing, probation first. It looks
// at the few entries failed least recently, not the whole table.
func (t *failureTable) evict(limit int, now time.Time) bool {
	const look = 16
	for _, l := range []*list.List{&t.probation, &t.protected} {
		e := l.Back()
		for i := 0; e != nil && i < look; i, e = i+1, e.Prev() {
			f := e.Value.(*failures)
			if f.current(now) < limit {
				l.Remove(e)
				delete(t.entries, f.key)
				return true
			}
		}
	}
	return false
}
