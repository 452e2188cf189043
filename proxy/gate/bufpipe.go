package gate

import (
	"io"
	"sync"
)

// bufPipe is an in-memory pipe with a bounded buffer. Unlike io.Pipe, the
// writer (the download, the storage writer, the digest) runs ahead of the
// reader (the scanner) by up to limit bytes, so a pause of the scanner, busy
// with another layer, does not stall the download; and a stall of the
// download does not idle the scanner while buffered bytes remain.
type bufPipe struct {
	mu     sync.Mutex
	cond   sync.Cond
	chunks [][]byte
	head   int // read offset into chunks[0]
	size   int // buffered bytes
	limit  int
	werr   error // set by CloseWrite: what the reader gets after the data
	rerr   error // set by CloseRead: what the writer gets
}

// pipeChunk is the unit the buffer is kept in; chunks are pooled.
const pipeChunk = 256 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, pipeChunk); return &b }}

func newBufPipe(limit int) *bufPipe {
	p := &bufPipe{limit: limit}
	p.cond.L = &p.mu
	return p
}

// Write copies b into the buffer, waiting while it is full.
func (p *bufPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for len(b) > 0 {
		for p.size >= p.limit && p.rerr == nil {
			p.cond.Wait()
		}
		if p.rerr != nil {
			return n, p.rerr
		}
		if p.werr != nil {
			return n, io.ErrClosedPipe
		}
		last := len(p.chunks) - 1
		if last < 0 || len(p.chunks[last]) == pipeChunk {
			buf := chunkPool.Get().(*[]byte)
			p.chunks = append(p.chunks, (*buf)[:0])
			last++
		}
		c := p.chunks[last]
		m := copy(c[len(c):pipeChunk], b)
		p.chunks[last] = c[:len(c)+m]
		p.size += m
		n += m
		b = b[m:]
		p.cond.Broadcast()
	}
	return n, nil
}

// Read takes buffered bytes, waiting while there are none.
func (p *bufPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.size == 0 && p.werr == nil && p.rerr == nil {
		p.cond.Wait()
	}
	if p.rerr != nil {
		return 0, io.ErrClosedPipe
	}
	if p.size == 0 {
		return 0, p.werr
	}
	n := 0
	for n < len(b) && p.size > 0 {
		c := p.chunks[0]
		m := copy(b[n:], c[p.head:])
		n += m
		p.head += m
		p.size -= m
		if p.head == len(c) && (len(c) == pipeChunk || len(p.chunks) > 1) {
			c = c[:pipeChunk]
			chunkPool.Put(&c)
			p.chunks = p.chunks[1:]
			p.head = 0
		}
	}
	p.cond.Broadcast()
	return n, nil
}

// CloseWrite ends the stream: the reader gets err (io.EOF if nil) once the
// buffer is drained.
func (p *bufPipe) CloseWrite(err error) {
	if err == nil {
		err = io.EOF
	}
	p.mu.Lock()
	if p.werr == nil {
		p.werr = err
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// CloseRead tells the writer the reader is gone: writes fail with err, and
// the buffer is dropped.
func (p *bufPipe) CloseRead(err error) {
	p.mu.Lock()
	if p.rerr == nil {
		p.rerr = err
	}
	for _, c := range p.chunks {
		c = c[:pipeChunk]
		chunkPool.Put(&c)
	}
	p.chunks, p.size, p.head = nil, 0, 0
	p.cond.Broadcast()
	p.mu.Unlock()
}
