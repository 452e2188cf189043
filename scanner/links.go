package scanner

import (
	"bytes"
	"hash/maphash"
	"io"
	"path"
	"strings"
	"sync"
)

// linkStoreBytes bounds the content of earlier files one layer scan keeps
// so that a hard link can be scanned again under its own name. It is
// allocated only as files arrive, so a small layer costs what it holds.
const linkStoreBytes = 32 << 20

// plnkDir is the AUFS hard-link directory. moby's UnpackLayer keeps the
// regular files under it by base name and turns a hard link into it
// into a regular file with that content at the link's path.
const plnkDir = ".wh..wh.plnk"

// linkEntry is what the walk remembers of a regular file (or of a hard
// link, which shares its target's entry) for links that come later.
type linkEntry struct {
	start int64 // offset of the content in the store's stream of kept bytes
	size  int64
	kept  bool // the content went into the store (it may since be overwritten)
	exec  bool // exec mode bit or executable magic
	// names are the paths of this inode scanned as not executable, to
	// scan again should a later link make the inode executable. Only
	// inodes with a hard link have them.
	names []string
}

// linkStore remembers, for one layer, every regular file by path and the
// content of the most recent ones in a ring of at most linkStoreBytes.
// Paths are kept as 64-bit hashes with a per-scan random seed, so the
// index costs a few dozen bytes per file whatever the length of names
// (files are bounded by MaxFiles).
type linkStore struct {
	seed  maphash.Seed
	paths map[uint64]*linkEntry
	plnk  map[uint64]*linkEntry // by base name, as moby resolves them

	nameBytes int64 // bytes held in linkEntry.names, bounded by max

	// ring holds the most recent max bytes written, in chunks of
	// ringChunk allocated as the ring first reaches them, so that it never
	// grows by copying itself; then it wraps.
	ring    [][]byte
	max     int64
	written int64 // bytes ever written to the ring
}

// ringChunk is the unit the ring is allocated in.
const ringChunk = 1 << 20

func newLinkStore(max int64) *linkStore {
	return &linkStore{seed: maphash.MakeSeed(), paths: map[uint64]*linkEntry{}, plnk: map[uint64]*linkEntry{}, max: max}
}

func (s *linkStore) key(name string) uint64 { return maphash.String(s.seed, name) }

// keep returns a writer that appends a file's content to the ring, or nil
// when the file is larger than the ring.
func (s *linkStore) keep(size int64) (io.Writer, int64, bool) {
	if size > s.max {
		return nil, 0, false
	}
	return ringWriter{s}, s.written, true
}

// chunkPool reuses ring chunks between layer scans.
var chunkPool = sync.Pool{New: func() any { return new([ringChunk]byte) }}

// release gives the ring back; the store must not be used after. Jobs
// never point into the ring (rescans copy into scan buffers).
func (s *linkStore) release() {
	for _, c := range s.ring {
		if len(c) == ringChunk {
			chunkPool.Put((*[ringChunk]byte)(c))
		}
	}
	s.ring = nil
}

// chunk returns the i-th chunk of the ring, allocating the chunks up to it.
func (s *linkStore) chunk(i int64) []byte {
	for int64(len(s.ring)) <= i {
		from := int64(len(s.ring)) * ringChunk
		if n := s.max - from; n < ringChunk {
			s.ring = append(s.ring, make([]byte, n)) // a ring smaller than a chunk (tests)
		} else {
			s.ring = append(s.ring, chunkPool.Get().(*[ringChunk]byte)[:])
		}
	}
	return s.ring[i]
}

type ringWriter struct{ s *linkStore }

func (w ringWriter) Write(p []byte) (int, error) {
	s, n := w.s, len(p)
	for len(p) > 0 {
		off := s.written % s.max
		m := copy(s.chunk(off / ringChunk)[off%ringChunk:], p)
		s.written += int64(m)
		p = p[m:]
	}
	return n, nil
}

// add records a regular file (name as in the tar header) and its entry.
func (s *linkStore) add(rawName, clean string, e *linkEntry) {
	s.paths[s.key(clean)] = e
	if strings.HasPrefix(rawName, plnkDir) {
		s.plnk[s.key(path.Base(rawName))] = e
	}
}

// resolve finds the entry a hard link's target names, the way moby's
// UnpackLayer does: a target under the AUFS hard-link directory by its
// base name, any other by its path in the layer.
// viaPlnk says the target is an AUFS hard-link file.
func (s *linkStore) resolve(linkname string) (e *linkEntry, viaPlnk, ok bool) {
	if strings.HasPrefix(path.Clean(linkname), plnkDir) {
		e, ok = s.plnk[s.key(path.Base(linkname))]
		return e, true, ok
	}
	e, ok = s.paths[s.key(cleanPath(linkname))]
	return e, false, ok
}

// addName remembers a non-executable name of a linked inode.
func (s *linkStore) addName(e *linkEntry, name string) error {
	s.nameBytes += int64(len(name))
	if s.nameBytes > s.max {
		return limitError("hard links in this layer name more than %d bytes of paths", s.max)
	}
	e.names = append(e.names, name)
	return nil
}

// content returns a reader of an entry's content, or false when it was not
// kept or has since been overwritten.
func (s *linkStore) content(e *linkEntry) (io.Reader, bool) {
	if !e.kept || s.written-e.start > s.max {
		return nil, false
	}
	if e.size == 0 {
		return bytes.NewReader(nil), true
	}
	var parts []io.Reader
	for at, left := e.start, e.size; left > 0; {
		off := at % s.max
		c := s.chunk(off / ringChunk)[off%ringChunk:]
		c = c[:min(int64(len(c)), left)]
		parts = append(parts, bytes.NewReader(c))
		at += int64(len(c))
		left -= int64(len(c))
	}
	return io.MultiReader(parts...), true
}
