package bolt

import "sync"

// Reads remembered. One process holds the file (bbolt locks it), so every
// write goes through this Store, and a remembered read can be kept exact by
// forgetting it on the writes that change it. A warm manifest request reads
// an override, the links and one verdict per layer; each was a read
// transaction (two acquisitions of bbolt's one meta mutex, contended by
// every concurrent request) and a JSON decode. Remembered, a warm request
// takes neither.

// maxMemo bounds each memo; past it an arbitrary entry is forgotten and
// read from the file again when needed.
const maxMemo = 1 << 16

// memo remembers values by key. A read that began before a write that
// forgets (gen read first, handed to put) is not remembered: it may hold
// what the write replaced.
type memo[V any] struct {
	mu  sync.RWMutex
	gen uint64
	m   map[string]V
}

func (c *memo[V]) get(k string) (V, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *memo[V]) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

func (c *memo[V]) put(k string, v V, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.m == nil {
		c.m = make(map[string]V)
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= maxMemo {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = v
}

// forget drops k; call it after the write is committed (and, for a write
// that can fail half-way, before it too).
func (c *memo[V]) forget(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, k)
}

// forgetAll drops everything.
func (c *memo[V]) forgetAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.m)
}
