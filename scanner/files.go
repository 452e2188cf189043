package scanner

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"path"
	"strings"
)

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
// It returns whether the file was taken as executable (mode or magic).
func (w *walker) scanFile(it item, r io.Reader, size int64) (bool, error) {
	if size >= 0 && size <= int64(w.s.batchSize) {
		return w.addSmall(it, r, int(size), w.s.batchSize)
	}
	return w.scanWindows(it, r, size)
}

// maxBatchItems caps the files packed into one job, so a layer of
// millions of empty or tiny files is still spread over the workers and
// its item lists stay small.
const maxBatchItems = 1024

func (w *walker) addSmall(it item, r io.Reader, size, batchCap int) (bool, error) {
	if w.batch != nil && (w.used+size > batchCap || len(w.batch.items) >= maxBatchItems) {
		if err := w.flush(); err != nil {
			return false, err
		}
	}
	if w.batch == nil {
		if err := w.st.acquire(); err != nil {
			return false, err
		}
		w.batch = &job{scan: w.st, buf: w.s.batches.get()}
		w.used = 0
	}
	data := w.batch.buf.b[w.used : w.used+size]
	if n, err := io.ReadFull(r, data); err != nil {
		err = fmt.Errorf("read %s: %w", it.shown(), noEOF(err))
		if n > 0 && !w.hardError(err) {
			// Shorter than its header says: tar writes out what there
			// is ("Unexpected EOF in archive"), so that is scanned, then
			// the error ends the walk.
			if _, serr := w.addSmall(it, bytes.NewReader(bytes.Clone(data[:n])), n, batchCap); serr != nil {
				return false, serr
			}
		}
		return false, err
	}
	w.used += size
	if !it.opaque {
		w.bytes += int64(size)
	}
	it.exec = it.exec || hasExecMagic(data)
	it.hash = w.st.rs.knownBad != nil
	it.data = data
	kind := notArchive
	if !it.opaque {
		kind = detectArchive(&it, data, int64(size))
	}
	var a *archived
	if kind != notArchive {
		// Taken now: data goes to a worker with its batch, which may be
		// submitted and recycled while the archive is unpacked.
		a = contents(kind, data)
	}
	var behind []*archived
	var tooMany bool
	if !it.opaque {
		// An archive behind something else (a self-extractor, a "#!"
		// zipapp, gzexe, makeself): what it holds is looked into too;
		// the file is scanned whole.
		var err error
		if behind, tooMany, err = w.behindPrefix(data, kind); err != nil {
			return false, err
		}
	}
	trimmed := w.trimmable(&it, a, size)
	if trimmed {
		it.data = data[:archiveHead]
	}
	w.batch.items = append(w.batch.items, it)
	if isELF(data) {
		// Unpacked before data's batch can be submitted and recycled.
		u, err := w.unpack(data)
		if err := w.scanUnpacked(it, u, err); err != nil {
			return false, err
		}
	}
	// The file's own archive first: what its stream reads is not read
	// again behind its start.
	own, err := w.unarchiveOwn(it, a, trimmed)
	if err != nil {
		return false, err
	}
	if err := w.unarchiveAll(it, behind, tooMany, int64(len(data)), own); err != nil {
		return false, err
	}
	return it.exec, nil
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

// noEOF reports a short file as unexpected EOF: inside a tar, EOF before
// a file's end means the stream was truncated.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
