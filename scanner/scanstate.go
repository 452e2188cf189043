package scanner

import (
	"context"
	"os"
	"sync"
	"time"
)

// item is one piece of content to scan: a whole small file, one window of
// a large file, or one field of an image config.
type item struct {
	path string // "/usr/bin/x" or "config:Cmd"
	name string // "x"
	ext  string // "sh"
	exec bool
	hash bool // a whole file to check against the known-bad list
	data []byte
	// label says how the content was unpacked from the file at path
	// ("UPX-packed"), empty for a file's own bytes; depth counts the
	// unpackings. Rules see path; findings name path and label.
	label string
	depth int
	// where is the path findings name for a member of an archive or a
	// payload decoded from a file ("/opt/a.tar.gz!x/xmrig"), whose path
	// is what rules see ("/x/xmrig"); outer is then the layer's file it
	// was found in, and nest how many archives deep it is.
	where string
	outer string
	nest  int
	// opaque content is scanned as bytes only, never looked into as an
	// archive: what a large archive holds past the end its unpacker
	// read to.
	opaque bool
	// leftover, with opaque, is what a large compressed file or tar
	// holds past the end its reading stopped at: it is searched behind
	// its start as a file is (a stream after other bytes, which tail -c
	// cuts out), but its start is never taken for an archive.
	leftover bool
	// base is where the leftover starts in its file: what is found
	// behind its start is named by its offset in the file.
	base int64
	// unaligned says that the content is a payload decoded at an
	// alignment its letters do not end whole in: bytes no tool writes,
	// whose start is not taken for an archive by a magic of two bytes
	// (see weakMagic).
	unaligned bool
	// spooled, when set, holds the item's content in place of data: a
	// large file's spool, scanned whole (see scanSpooled).
	spooled *os.File
}

// file is a finding's File: the layer's file, for content unpacked from it.
func (it *item) file() string {
	if it.outer != "" {
		return it.outer
	}
	if it.label == "" {
		return ""
	}
	return it.path
}

// shown is the path findings name: the path (or, inside an archive, the
// whole path through it), followed by how the content was unpacked from
// it, if it was.
func (it *item) shown() string {
	p := it.path
	if it.where != "" {
		p = it.where
	}
	if it.label == "" {
		return p
	}
	return p + " (" + it.label + ")"
}

// job is what a worker takes from the queue: one buffer's worth of items.
// Small files are packed several to a buffer to keep per-job overhead off
// layers made of thousands of tiny files.
type job struct {
	scan  *scanState
	buf   *buffer // returned to its pool when the job is done; nil when items point into caller memory
	items []item
	file  *os.File // closed when the job is done: an item's file
}

// scanState is shared by the walker of one ScanLayer/ScanConfig call and
// the workers scanning its jobs.
type scanState struct {
	ctx      context.Context
	deadline time.Time
	due      time.Time // orders its jobs among others of their priority (see SizedPrioritizer)
	context  string    // contextLayer or contextConfig
	prio     Prioritizer
	rs       *ruleset // pinned for the whole scan; every job runs under it
	// slots bounds the jobs (and so the buffers) in flight for this scan:
	// the walker sends before taking a buffer, a worker receives when done.
	slots chan struct{}

	mu       sync.Mutex
	seen     map[Finding]struct{}
	findings []Finding
	err      error
}

func (st *scanState) add(f Finding) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, dup := st.seen[f]; dup {
		return
	}
	st.seen[f] = struct{}{}
	st.findings = append(st.findings, f)
}

// fail records the first error a worker hit; the walker returns it.
func (st *scanState) fail(err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.err == nil {
		st.err = err
	}
}

func (st *scanState) firstErr() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.err
}

// acquire takes a slot, waiting while the scan has its maximum of jobs in
// flight.
func (st *scanState) acquire() error {
	select {
	case st.slots <- struct{}{}:
		return nil
	case <-st.ctx.Done():
		return st.ctx.Err()
	}
}

func (st *scanState) release() { <-st.slots }

// wait returns when every submitted job has been scanned.
func (st *scanState) wait() error {
	for range cap(st.slots) {
		if err := st.acquire(); err != nil {
			return err
		}
	}
	for range cap(st.slots) {
		st.release()
	}
	return nil
}

// drain waits for every submitted job regardless of the context, for
// scans whose jobs point into the caller's memory.
func (st *scanState) drain() {
	for range cap(st.slots) {
		st.slots <- struct{}{}
	}
	for range cap(st.slots) {
		st.release()
	}
}

// result returns the findings, sorted.
func (st *scanState) result() []Finding {
	st.mu.Lock()
	defer st.mu.Unlock()
	fs := append([]Finding(nil), st.findings...)
	sortFindings(fs)
	return fs
}
