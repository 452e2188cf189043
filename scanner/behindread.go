package scanner

import (
	"fmt"
	"io"

	"github.com/pullgate/pullgate/internal/isal"
)

// What behindPrefix and searchSpooled list is read here, once: a gzip
// stream read on into the members after it stands for them.

// tooManyStreams reports a file whose streams behind its start were not
// all read: what says why.
func (w *walker) tooManyStreams(it item, what string) {
	w.archiveFinding(it, ArchiveUnreadableRule, SeverityHigh, what+"; those after them were not read")
}

// unarchiveAll looks into each archive of as, found in the file it of
// size bytes (see behindPrefix), up to maxBehind(size) of them; tooMany
// says more were not tried or listed.
//
// A gzip stream goes on into the members that follow it, as gzip -dc
// does: a member that one before it was read on into, its output read
// whole, is not read again on its own, or a run of n members (a Chromium
// resource pack holds hundreds) would be read n²/2 times.
func (w *walker) unarchiveAll(it item, as []*archived, tooMany bool, size int64) error {
	var read map[int64]bool // where such members start
	n := 0
	for _, a := range as {
		if a.kind == archiveStream && read[a.off] {
			continue
		}
		if n++; n > maxBehind(size) {
			w.tooManyStreams(it, fmt.Sprintf("more compressed streams behind the file's start than are read (%d)", maxBehind(size)))
			return nil
		}
		if a.kind == archiveStream {
			// Only a stream's own members: a zip entry's stream
			// starts past its local header, and its offsets are not
			// the file's.
			w.onMember = func(off int64) {
				if read == nil {
					read = map[int64]bool{}
				}
				read[a.off+off] = true
			}
		}
		err := w.unarchive(it, a)
		w.onMember = nil
		if err != nil {
			return err
		}
	}
	if tooMany {
		w.tooManyStreams(it, fmt.Sprintf("more candidate streams behind the file's start than are tried (%d) or listed (%d)", maxTrials(size), maxListed(size)))
	}
	return nil
}

// memberReader reads a gzip stream behind a prefix and tells done where
// each of its members after the first starts, once that member's output
// has all been read: when the next member starts (ISA-L starts one only
// when the output before it is read, see isal.Reader.OnMember), or when
// the stream ends, with an error or not.
type memberReader struct {
	r       io.Reader
	done    func(off int64)
	pending int64
	has     bool
}

func newMemberReader(zr *isal.Reader, done func(off int64)) *memberReader {
	m := &memberReader{r: zr, done: done}
	zr.OnMember(func(off int64) {
		if m.has {
			m.done(m.pending)
		}
		m.pending, m.has = off, true
	})
	return m
}

func (m *memberReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if err != nil && m.has {
		m.done(m.pending)
		m.has = false
	}
	return n, err
}
