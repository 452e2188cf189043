package scanner

import "io"

// A layer's walker does the tar walk, the reads into scan buffers and the
// unpacking of archives inside files, while the workers run YARA; the
// layer's own decompression is more than a fifth of the walker's CPU. A
// readAhead moves it to a goroutine of its own, so one layer's scan keeps
// both the walker and the workers busy.
const (
	readAheadChunks = 4
	readAheadChunk  = 256 << 10
)

// readAhead reads r in its own goroutine, up to readAheadChunks chunks
// ahead of its reader, and hands over each chunk with the error that
// followed it, in order.
type readAhead struct {
	full chan readChunk
	free chan []byte
	stop chan struct{}
	done chan struct{}

	cur  []byte // unread part of the chunk being read
	held []byte // that chunk's buffer, returned to free when used up
	err  error
}

type readChunk struct {
	b   []byte
	err error
}

func newReadAhead(r io.Reader) *readAhead {
	ra := &readAhead{
		full: make(chan readChunk, readAheadChunks),
		free: make(chan []byte, readAheadChunks),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for range readAheadChunks {
		ra.free <- make([]byte, readAheadChunk)
	}
	go ra.fill(r)
	return ra
}

// fill runs until r fails or ends, or close asks it to stop. full has
// room for every buffer, so sending never blocks.
func (ra *readAhead) fill(r io.Reader) {
	defer close(ra.done)
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.stop:
			return
		}
		n, err := fillChunk(r, buf)
		ra.full <- readChunk{b: buf[:n], err: err}
		if err != nil {
			return
		}
	}
}

// fillChunk reads into buf until it is full or r fails, and returns r's
// error as it was (io.ReadFull would turn an early io.EOF into
// io.ErrUnexpectedEOF, which decoders also use for a truncated stream).
func fillChunk(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.err != nil {
			return 0, ra.err
		}
		if ra.held != nil {
			ra.free <- ra.held[:cap(ra.held)]
			ra.held = nil
		}
		c := <-ra.full
		ra.cur, ra.held, ra.err = c.b, c.b, c.err
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// close stops the goroutine and waits for it: the decoder and the
// caller's reader are free for others once it returns. A read already
// under way in the goroutine is let finish.
func (ra *readAhead) close() {
	close(ra.stop)
	<-ra.done
}
