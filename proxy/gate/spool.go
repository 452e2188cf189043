package gate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/pullgate/pullgate/storage"
)

// A spool is the copy of one blob's upstream bytes that an ingest writes
// to disk beside the store writer and the scanner, so that clients can be
// sent the body while it is still being scanned (stream mode). It holds
// bytes nobody has judged yet: readers hold back its tail (see BlobStream)
// until the gate has decided. One spool per ingest flight, in the gate's
// spool folder; the file is removed when the ingest ends and its
// descriptor closed when the last reader is done (a reader keeps reading
// an unlinked file on Linux). The folder is emptied when a gate starts:
// a restart mid-ingest leaves nothing behind.

// errSpoolFailed is what readers get when the spool could not be written
// (a full disk): the ingest goes on, but nobody can be streamed from it.
var errSpoolFailed = errors.New("spool write failed")

type spool struct {
	mu      sync.Mutex
	cond    sync.Cond
	f       *os.File
	path    string
	size    int64 // the blob's declared size
	written int64
	ended   bool  // the ingest finished writing (or failed)
	werr    error // why writing stopped early, if it did
	refs    int   // the ingest's own and one per reader
}

// newSpool creates the spool of one ingest in dir.
func newSpool(dir string, size int64) (*spool, error) {
	f, err := os.CreateTemp(dir, "blob-*")
	if err != nil {
		return nil, fmt.Errorf("create spool file in %s: %w", dir, err)
	}
	s := &spool{f: f, path: f.Name(), size: size, refs: 1}
	s.cond.L = &s.mu
	return s, nil
}

// Write appends to the spool. It never fails the ingest that tees into
// it: a write error is kept for the readers, which are cut off, and the
// rest of the blob is not spooled.
func (s *spool) Write(p []byte) (int, error) {
	s.mu.Lock()
	failed := s.werr != nil
	s.mu.Unlock()
	if failed {
		return len(p), nil
	}
	n, err := s.f.WriteAt(p, s.written) // only this writer moves written
	s.mu.Lock()
	s.written += int64(n)
	if err != nil {
		s.werr = fmt.Errorf("%w: %v", errSpoolFailed, err)
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	return len(p), nil
}

// end marks the end of writing, removes the file from the folder and
// drops the ingest's reference; readers holding one keep reading it.
func (s *spool) end() {
	s.mu.Lock()
	s.ended = true
	s.cond.Broadcast()
	s.mu.Unlock()
	_ = os.Remove(s.path)
	s.release()
}

// acquire takes a reader's reference; false once the spool is closed.
func (s *spool) acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refs == 0 {
		return false
	}
	s.refs++
	return true
}

// release drops a reference; the last one closes the file.
func (s *spool) release() {
	s.mu.Lock()
	s.refs--
	last := s.refs == 0
	s.mu.Unlock()
	if last {
		_ = s.f.Close()
	}
}

// readAt reads into p the bytes at off, at most up to limit and only
// those followed by at least behind more written bytes, waiting while
// there are none such yet. It returns io.EOF when the ingest ended before
// that (the blob was cut short), and the spool's error when it could not
// be written.
func (s *spool) readAt(ctx context.Context, p []byte, off, limit, behind int64) (int, error) {
	if off >= limit {
		return 0, nil
	}
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	for s.written-behind <= off && !s.ended && s.werr == nil && ctx.Err() == nil {
		s.cond.Wait()
	}
	avail, werr, ended := s.written-behind, s.werr, s.ended
	s.mu.Unlock()
	switch {
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case werr != nil:
		return 0, werr
	case avail <= off && ended:
		return 0, io.EOF
	}
	n := min(int64(len(p)), avail-off, limit-off)
	return s.f.ReadAt(p[:n], off)
}

// wholeWritten reports whether the ingest wrote all size bytes.
func (s *spool) wholeWritten() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.werr == nil && s.written == s.size
}

// resetSpoolDir empties the spool folder (what a restart mid-ingest left)
// and makes sure it exists.
func resetSpoolDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("empty spool folder %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create spool folder %s: %w", dir, err)
	}
	return nil
}

// openSpool gives the ingest of ref a spool when ref asks for one and it
// can be streamed (a layer of known size), and publishes it (or that
// there is none) to the flight's readers. A spool that cannot be created
// costs only the streaming: its clients wait for the verdict, as in hold
// mode.
//
// Only what upstream and the manifest agree on is streamed: with no
// Content-Length (upstreamSize < 0), or another one than the manifest's,
// the bytes that really come could end before the size the readers hold
// back from (see BlobStream.ReadAt).
func (g *Gate) openSpool(fl *flight, ref Ref, upstreamSize, size int64) *spool {
	select {
	case <-fl.spooled:
		return nil // readers were told there is none (see claim)
	default:
	}
	if !ref.Spool || g.opts.SpoolDir == "" || size < 0 || upstreamSize != size || ref.IsConfig() {
		fl.publishSpool(nil)
		return nil
	}
	sp, err := newSpool(g.opts.SpoolDir, size)
	if err != nil {
		g.log.Warn("no spool to stream from; clients wait for the verdict", "digest", ref.Digest.String(), "err", err)
		fl.publishSpool(nil)
		return nil
	}
	fl.publishSpool(sp)
	return sp
}

// verifyStored hashes a blob just committed from a spooled ingest in the
// background, once its file has settled, so that the store remembers it
// verified (storage.Blobs.Verify). Its streaming clients read the spool,
// not the store, so without this the first pull of the blob from the
// store (the first warm pull) would be the one to hash it, and could not
// use sendfile. One blob is hashed at a time; a blob that does not match
// is left for its next serve to find and remove.
func (g *Gate) verifyStored(dgst digest.Digest) {
	go func() {
		g.verifies <- struct{}{}
		defer func() { <-g.verifies }()
		ctx, cancel := context.WithTimeout(context.Background(), g.opts.IngestTimeout)
		defer cancel()
		if _, err := g.opts.Blobs.Verify(ctx, dgst); err != nil && !errors.Is(err, storage.ErrNotFound) {
			g.log.Warn("verify stored blob", "digest", dgst.String(), "err", err)
		}
	}()
}
