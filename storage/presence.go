package storage

import (
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// Knowing what the store holds without asking the driver. distribution's
// linked blob store answers "is this blob here" with a readlink of the
// repository's link file, the link's digest read back, and every path
// checked against the driver's path regexps: on a warm manifest request,
// once per layer, it was most of the CPU. presence remembers the answer.
//
// It is kept exact for this process's own writes: Commit records a blob,
// Delete (eviction, quarantine, rescan removals) forgets it before and
// after removing it, and a look-up that raced a removal is not recorded.
// What it does not hold is asked of the driver (miss-through), so a blob
// another replica committed is found. A blob another replica removed is
// still "present" here until a reader finds its file gone, which forgets
// it. Presence never stands for a verdict: the gate reads the verdict
// every time, and the bytes served are verified as before.

// maxPresent bounds the digests remembered per internal repository: about
// 150 bytes each, so 10 MiB at most. Past it an arbitrary one is forgotten
// and asked of the driver again when needed.
const maxPresent = 1 << 16

// present is what is remembered of one stored digest.
type present struct {
	size      int64
	mediaType string // manifests only
	// The blob's file as it was when its bytes last hashed to its digest,
	// and when that was (verified.go); zero when not verified.
	file     fileID
	verified time.Time
}

type presence struct {
	mu  sync.Mutex
	gen uint64 // bumped by every removal
	m   map[digest.Digest]present
	max int
}

func newPresence(max int) *presence {
	return &presence{m: make(map[digest.Digest]present), max: max}
}

// get returns what is remembered of d.
func (p *presence) get(d digest.Digest) (present, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[d]
	return e, ok
}

// generation is read before asking the driver, and handed to found.
func (p *presence) generation() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen
}

// found records what the driver said of d, unless a removal happened since
// gen was read: the driver's answer may predate it.
func (p *presence) found(d digest.Digest, e present, gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen == gen {
		p.put(d, e)
	}
}

// committed records a blob this process just committed.
func (p *presence) committed(d digest.Digest, e present) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.put(d, e)
}

func (p *presence) put(d digest.Digest, e present) {
	if _, ok := p.m[d]; !ok && len(p.m) >= p.max {
		for k := range p.m {
			delete(p.m, k)
			break
		}
	}
	p.m[d] = e
}

// verified records that d's file, of identity id, hashed to d at time at,
// if d is still known (a removal forgets it).
func (p *presence) verified(d digest.Digest, id fileID, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.m[d]; ok && e.size == id.size {
		e.file, e.verified = id, at
		p.m[d] = e
	}
}

// forget drops d; a removal, or a reader that found it gone.
func (p *presence) forget(d digest.Digest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	delete(p.m, d)
}

// len is how many digests are remembered.
func (p *presence) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}
