package scanner

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pullgate/pullgate/internal/isal"
)

// zstdMaxWindow bounds the memory a zstd stream may make the decoder hold.
// Layers compressed with a larger window (zstd --long=27 and up) are
// refused with ErrLimit rather than allowed to pin that much memory.
const zstdMaxWindow = 64 << 20

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

var (
	bufioPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}
	zstdPool  = sync.Pool{New: func() any {
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1), // decode in the walker's goroutine
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow),
		)
		if err != nil {
			panic(fmt.Sprintf("zstd decoder options: %v", err))
		}
		return d
	}}
)

// ScanLayer reads a layer blob and scans every regular file in it. It
// detects gzip, zstd or plain tar by magic bytes; anything else is scanned
// as one raw file with path "/". The walk runs in the caller's goroutine;
// files go to the worker pool. On success r has been read to EOF
// (trailing bytes too, so a gzip checksum is verified), so the caller can
// tee the same stream into storage.
//
// On error the Result holds what was found before the error; it must
// never be taken as clean. Limits give errors wrapping ErrLimit, undecodable
// content ErrCorrupt. Cancellation is noticed between reads of r, so r
// should itself return once ctx is done (an HTTP body does).
func (s *Scanner) ScanLayer(ctx context.Context, r io.Reader, prio Prioritizer) (Result, error) {
	start := time.Now()
	st, cancel, err := s.newScan(ctx, contextLayer, prio)
	if err != nil {
		return Result{}, err
	}
	defer cancel()
	w := &walker{s: s, st: st, parent: ctx}
	err = w.walk(r)
	if err == nil {
		err = st.wait()
	}
	if err == nil {
		err = st.firstErr()
	}
	if err != nil {
		if w.batch != nil {
			w.batch.buf.put()
			w.batch = nil
		}
		err = w.explain(err)
	}
	res := Result{Findings: st.result(), Files: w.files, Bytes: w.bytes, Duration: time.Since(start)}
	return res, err
}

// walker streams one layer into jobs.
type walker struct {
	s      *Scanner
	st     *scanState
	parent context.Context

	src   *sourceReader
	count *countReader

	files int64
	bytes int64

	batch *job   // small files waiting to be submitted
	used  int    // bytes of batch.buf in use
	tail  []byte // overlap carried between windows of a large file
}

// sourceReader wraps the caller's reader: it remembers a read error (so it
// is reported as an I/O error, not as corruption) and stops reading once
// the scan's context is done.
type sourceReader struct {
	r   io.Reader
	ctx context.Context
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// countReader enforces MaxLayerBytes on the decompressed stream.
type countReader struct {
	r     io.Reader
	n     int64
	limit int64
	err   error
}

func (c *countReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if room := c.limit - c.n + 1; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		c.err = limitError("layer decompresses to more than MaxLayerBytes %d", c.limit)
		return n, c.err
	}
	return n, err
}

// walk decodes the stream and submits its files. It returns the first
// error as it happened; explain turns it into the error to report.
func (w *walker) walk(r io.Reader) error {
	w.src = &sourceReader{r: r, ctx: w.st.ctx}
	br := bufioPool.Get().(*bufio.Reader)
	br.Reset(w.src)
	defer func() {
		br.Reset(nil)
		bufioPool.Put(br)
	}()

	magic, err := br.Peek(4)
	if err != nil && err != io.EOF {
		return err
	}
	var body io.Reader = br
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		// ISA-L inflates about three times as fast as Go on one core,
		// and inflating is most of a cold pull's CPU.
		zr, err := isal.NewReader(br)
		if err != nil {
			return err
		}
		defer zr.Close()
		body = zr
	case bytes.HasPrefix(magic, zstdMagic):
		zr := zstdPool.Get().(*zstd.Decoder)
		if err := zr.Reset(br); err != nil {
			return corruptError("read zstd header", err)
		}
		defer func() {
			zr.Reset(nil)
			zstdPool.Put(zr)
		}()
		body = zr
	}
	w.count = &countReader{r: body, limit: w.s.limits.MaxLayerBytes}

	var head [512]byte
	n, err := io.ReadFull(w.count, head[:])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return err
	}
	stream := io.MultiReader(bytes.NewReader(head[:n]), w.count)
	if isTar(head[:n]) {
		err = w.walkTar(stream)
	} else {
		err = w.walkRaw(stream)
	}
	if err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	// Read to the end: bytes after the tar's end-of-archive blocks still
	// count against MaxLayerBytes, and only EOF verifies a gzip or zstd
	// checksum and lets the caller's tee see the whole blob.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	return nil
}

// isTar says whether a stream's first block is a tar header: the ustar
// magic, a valid old-style header checksum, or an all-zero end block.
func isTar(b []byte) bool {
	if len(b) < 512 {
		return false
	}
	if string(b[257:262]) == "ustar" {
		return true
	}
	if bytes.Count(b, []byte{0}) == 512 {
		return true
	}
	// v7 tar: the checksum field is the octal sum of the header bytes with
	// the field itself counted as spaces.
	field := strings.Trim(string(b[148:156]), " \x00")
	if field == "" {
		return false
	}
	var want int64
	for _, c := range field {
		if c < '0' || c > '7' {
			return false
		}
		want = want*8 + int64(c-'0')
	}
	var sum int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	return sum == want
}

func (w *walker) walkTar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		if err := w.st.ctx.Err(); err != nil {
			return err
		}
		if err := w.st.firstErr(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar header: %w", err)
		}
		// Links, directories and devices carry no content of their own;
		// a hard link's target is scanned where it is stored.
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeGNUSparse {
			continue
		}
		name := cleanPath(hdr.Name)
		base := path.Base(name)
		if strings.HasPrefix(base, ".wh.") {
			continue
		}
		w.files++
		if w.files > w.s.limits.MaxFiles {
			return limitError("layer has more than MaxFiles %d regular files", w.s.limits.MaxFiles)
		}
		if hdr.Size > w.s.limits.MaxFileBytes {
			return limitError("file %s is %d bytes, more than MaxFileBytes %d", name, hdr.Size, w.s.limits.MaxFileBytes)
		}
		if w.count.n+hdr.Size > w.count.limit {
			return limitError("file %s (%d bytes) takes the layer past MaxLayerBytes %d", name, hdr.Size, w.count.limit)
		}
		if err := w.scanFile(item{path: name, name: base, ext: extension(base), exec: hdr.Mode&0o111 != 0}, tr, hdr.Size); err != nil {
			return err
		}
	}
}

// walkRaw scans a blob that is not a tar as one file named "/".
func (w *walker) walkRaw(r io.Reader) error {
	w.files++
	return w.scanFile(item{path: "/", name: "", ext: ""}, r, -1)
}

func cleanPath(name string) string { return path.Clean("/" + name) }

func extension(base string) string {
	ext := path.Ext(base)
	if ext == "" {
		return ""
	}
	return strings.ToLower(ext[1:])
}

// hasExecMagic reports ELF, Mach-O (thin and fat) and PE/MZ headers.
func hasExecMagic(b []byte) bool {
	if len(b) >= 4 {
		switch binary.BigEndian.Uint32(b) {
		case 0x7f454c46, // ELF
			0xfeedface, 0xfeedfacf, 0xcefaedfe, 0xcffaedfe, // Mach-O
			0xcafebabe: // Mach-O fat
			return true
		}
	}
	return len(b) >= 2 && b[0] == 'M' && b[1] == 'Z'
}

// scanFile reads one file of known size (or, for size < 0, up to EOF) and
// submits it: packed into the current batch when it fits, otherwise in
// overlapping windows.
func (w *walker) scanFile(it item, r io.Reader, size int64) error {
	if size >= 0 && size <= int64(w.s.batchSize) {
		return w.addSmall(it, r, int(size), w.s.batchSize)
	}
	return w.scanWindows(it, r, size)
}

// maxBatchItems caps the files packed into one job, so a layer of
// millions of empty or tiny files is still spread over the workers and
// its item lists stay small.
const maxBatchItems = 1024

func (w *walker) addSmall(it item, r io.Reader, size, batchCap int) error {
	if w.batch != nil && (w.used+size > batchCap || len(w.batch.items) >= maxBatchItems) {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if w.batch == nil {
		if err := w.st.acquire(); err != nil {
			return err
		}
		w.batch = &job{scan: w.st, buf: w.s.batches.get()}
		w.used = 0
	}
	data := w.batch.buf.b[w.used : w.used+size]
	if _, err := io.ReadFull(r, data); err != nil {
		return fmt.Errorf("read %s: %w", it.path, noEOF(err))
	}
	w.used += size
	w.bytes += int64(size)
	it.exec = it.exec || hasExecMagic(data)
	it.hash = w.s.knownBad != nil
	it.data = data
	w.batch.items = append(w.batch.items, it)
	return nil
}

// flush submits the current batch, if any.
func (w *walker) flush() error {
	j := w.batch
	w.batch = nil
	if j == nil {
		return nil
	}
	return w.s.submit(j)
}

// scanWindows submits a large file as windows of Window bytes, each
// starting windowOverlap bytes before the previous one ended.
func (w *walker) scanWindows(it item, r io.Reader, size int64) error {
	window := int(w.s.limits.Window)
	maxBytes := w.s.limits.MaxFileBytes
	var read int64
	w.tail = w.tail[:0]
	var sum hash.Hash
	if w.s.knownBad != nil {
		sum = sha256.New()
	}
	for first := true; ; first = false {
		if err := w.st.acquire(); err != nil {
			return err
		}
		buf := w.s.windows.get()
		n := copy(buf.b, w.tail)
		want := window - n
		if size >= 0 {
			want = int(min(int64(want), size-read))
		}
		m, err := io.ReadFull(r, buf.b[n:n+want])
		read += int64(m)
		last := size >= 0 && read == size
		if err != nil {
			if size >= 0 || (err != io.EOF && err != io.ErrUnexpectedEOF) {
				buf.put()
				w.st.release()
				return fmt.Errorf("read %s: %w", it.path, noEOF(err))
			}
			last = true
		}
		if size < 0 && read > maxBytes {
			buf.put()
			w.st.release()
			return limitError("file %s is more than MaxFileBytes %d", it.path, maxBytes)
		}
		if last && m == 0 && !first {
			// An unsized stream ended exactly at a window boundary.
			buf.put()
			w.st.release()
			break
		}
		data := buf.b[:n+m]
		if sum != nil {
			// Hashed before the window goes to a worker, which gives the
			// buffer back to the pool when done.
			sum.Write(data[n:])
		}
		if first {
			it.exec = it.exec || hasExecMagic(data)
		}
		if !last {
			w.tail = append(w.tail[:0], data[len(data)-windowOverlap:]...)
		}
		wi := it
		wi.data = data
		if err := w.s.submit(&job{scan: w.st, buf: buf, items: []item{wi}}); err != nil {
			return err
		}
		if last {
			break
		}
	}
	w.bytes += read
	if sum != nil {
		var s [sha256.Size]byte
		if f, ok := w.s.knownBad.finding([sha256.Size]byte(sum.Sum(s[:0])), it.path); ok {
			w.st.add(f)
		}
	}
	return nil
}

// noEOF reports a short file as unexpected EOF: inside a tar, EOF before
// a file's end means the stream was truncated.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// explain turns the error that stopped a walk into the error to report.
// Causes are checked in order of how much they explain: the caller's
// context, an I/O error from the caller's reader, a limit, our own
// timeout, and only then the content itself is called corrupt.
func (w *walker) explain(err error) error {
	if cerr := w.s.ctxErr(w.parent, w.st); cerr != nil {
		if errors.Is(cerr, ErrLimit) {
			return cerr
		}
		return fmt.Errorf("scan layer: %w", cerr)
	}
	if w.src != nil && w.src.err != nil {
		return fmt.Errorf("read layer: %w", w.src.err)
	}
	if w.count != nil && w.count.err != nil {
		return w.count.err
	}
	switch {
	case err == w.st.firstErr(): // a worker's error says what it was scanning
		return err
	case errors.Is(err, ErrLimit), errors.Is(err, ErrCorrupt), errors.Is(err, ErrClosed):
		return err
	case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return limitError("zstd stream needs more than %d bytes of window: %v", zstdMaxWindow, err)
	}
	return corruptError("decode layer", err)
}
