package storage

import (
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
