package scanner

import "sync"

// buffer is a reusable scan buffer. Buffers come in two sizes: batch
// buffers that pack small files together, and window buffers for files
// larger than a batch. Both are reused through sync.Pools; how many are in
// use at once is bounded by each scan's slots, not by the pools.
type buffer struct {
	b    []byte
	pool *sync.Pool
}

func (b *buffer) put() { b.pool.Put(b) }

type bufferPool struct{ sync.Pool }

func newBufferPool(size int) *bufferPool {
	p := &bufferPool{}
	p.New = func() any { return &buffer{b: make([]byte, size), pool: &p.Pool} }
	return p
}

func (p *bufferPool) get() *buffer { return p.Get().(*buffer) }
