package kit

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
)

// NewToken returns a random lease token.
func NewToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// Watchers is the set of channels waiting on each key's release. The zero
// value is ready to use.
type Watchers struct {
	mu sync.Mutex
	m  map[string]map[chan struct{}]struct{}
}

// Add returns a channel closed when key is woken, and stop, which closes
// it early and forgets it.
func (w *Watchers) Add(key string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	w.mu.Lock()
	if w.m == nil {
		w.m = make(map[string]map[chan struct{}]struct{})
	}
	if w.m[key] == nil {
		w.m[key] = make(map[chan struct{}]struct{})
	}
	w.m[key][ch] = struct{}{}
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if set, ok := w.m[key]; ok {
			if _, ok := set[ch]; ok {
				delete(set, ch)
				close(ch)
			}
			if len(set) == 0 {
				delete(w.m, key)
			}
		}
	}
}

// Wake closes (and forgets) every channel waiting on key.
func (w *Watchers) Wake(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.m[key] {
		close(ch)
	}
	delete(w.m, key)
}
