package scanner

import "io"

// headerReader reads r through one buffer, refilled from the offset read
// when a read falls outside it; a read larger than the buffer goes to r.
type headerReader struct {
	r    io.ReaderAt
	size int64
	buf  []byte
	off  int64
	n    int
}

func (c *headerReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= c.off && off+int64(len(p)) <= c.off+int64(c.n) {
		return copy(p, c.buf[off-c.off:c.n]), nil
	}
	if len(p) > len(c.buf) || off < 0 || off >= c.size {
		return c.r.ReadAt(p, off)
	}
	n, err := c.r.ReadAt(c.buf[:min(int64(len(c.buf)), c.size-off)], off)
	c.off, c.n = off, n
	if n < len(p) {
		if err == nil {
			err = io.EOF
		}
		return copy(p, c.buf[:n]), err
	}
	return copy(p, c.buf[:n]), nil
}
