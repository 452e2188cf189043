package storage

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
)

// Remembering that a blob's file was verified. Hashing every byte served
// keeps a blob changed on disk from reaching a client whole, but it costs
// sendfile: each byte passes through user space. A blob whose file was
// read to its end and hashed to its digest is remembered with the file's
// identity as the filesystem reports it (device, inode, size, change and
// modification times); a later serve of a file with the same identity
// needs no hashing. Any write, truncation, rename over it, chmod or touch
// changes the change time (which no system call can set back), so the
// next serve verifies it again. What an unchanged identity cannot show is
// a change below the filesystem (a silent bit flip on the medium): that
// is found when the blob is verified again, at the latest verifyEvery
// after the last verification; meanwhile a client's own digest check
// refuses the bytes.

// verifyEvery is how long a verification stands for a file left unchanged.
const verifyEvery = time.Hour

// A verification counts only for a file whose last change was at least a
// margin before the read began, so that a file changed again within the
// filesystem's timestamp granularity of its verification cannot keep the
// identity it had when verified. The margin is a second where the file's
// times are whole seconds (a filesystem that keeps no finer times), and
// fineMargin where they show sub-second precision: Linux stamps changes
// from its coarse clock, which ticks every jiffy (at most 10 ms), so a
// change after the read began has a later time. Without it, a blob
// committed less than a second before its first serves (a warm pull right
// after the cold one) was hashed again on each.
const (
	coarseMargin = time.Second
	fineMargin   = 50 * time.Millisecond
)

// margin is how long before a read f must have last changed for the read
// to count as its verification.
func (id fileID) margin() time.Duration {
	if id.mtime%int64(time.Second) != 0 || id.ctime%int64(time.Second) != 0 {
		return fineMargin
	}
	return coarseMargin
}

// fileID is what the filesystem says of a file's content.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

// identify reads f's identity with fstat, of the open file itself.
func identify(f *os.File) (fileID, bool) {
	fi, err := f.Stat()
	if err != nil {
		return fileID{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}, true
}

// Verified reports whether f, an open file of blob dgst (from Reader), is
// the file whose bytes were last verified to hash to dgst, unchanged since,
// and verified less than verifyEvery ago: its bytes can be sent as they
// are.
func (b *Blobs) Verified(dgst digest.Digest, f *os.File) bool {
	e, ok := b.blobsHere.get(dgst)
	if !ok || e.verified.IsZero() || time.Since(e.verified) > verifyEvery {
		return false
	}
	id, ok := identify(f)
	return ok && id == e.file
}

// SetVerified records that f, an open file of blob dgst, was read from its
// start to its end from the time began and hashed to dgst. It is not
// recorded when f changed too near that time to tell (see margin), or
// when the store no longer knows the blob (removed meanwhile).
func (b *Blobs) SetVerified(dgst digest.Digest, f *os.File, began time.Time) {
	id, ok := identify(f)
	if !ok {
		return
	}
	if settled := began.Add(-id.margin()).UnixNano(); id.ctime > settled || id.mtime > settled {
		return
	}
	b.blobsHere.verified(dgst, id, time.Now())
}

// Verify reads the committed blob dgst from its start to its end and
// hashes it, as a serve does, and remembers the file as verified when it
// matches, so that its first serve can use sendfile. A blob whose file
// changed less than the margin ago (one just committed) is read once the
// margin has passed, so that the read counts (see SetVerified). It
// reports whether the blob was verified; a blob already verified, or in
// a store that is not files, is left alone. A blob whose bytes do not
// hash to dgst gives an error wrapping ErrDigestMismatch, and stays as it
// is: its next serve hashes it again and refuses it.
func (b *Blobs) Verify(ctx context.Context, dgst digest.Digest) (bool, error) {
	rc, _, err := b.Reader(ctx, dgst)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	f, ok := rc.(*os.File)
	if !ok || b.Verified(dgst, f) {
		return false, nil
	}
	id, ok := identify(f)
	if !ok {
		return false, nil
	}
	settled := time.Unix(0, max(id.ctime, id.mtime)).Add(id.margin())
	if wait := time.Until(settled); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
	}
	began := time.Now()
	v := dgst.Verifier()
	if _, err := io.Copy(v, readerCtx{ctx, f}); err != nil {
		return false, fmt.Errorf("verify blob %s: %w", dgst, err)
	}
	if !v.Verified() {
		return false, fmt.Errorf("verify blob %s: %w", dgst, ErrDigestMismatch)
	}
	b.SetVerified(dgst, f, began)
	return b.Verified(dgst, f), nil
}

// readerCtx stops a read when ctx ends.
type readerCtx struct {
	ctx context.Context
	r   io.Reader
}

func (r readerCtx) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
