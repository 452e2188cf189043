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

// verifyMargin keeps a file changed within the filesystem's timestamp
// granularity (a second on some) of its verification from keeping the
// identity it had when verified: a verification counts only for a file
// whose last change was at least this long before the read began.
var verifyMargin = time.Second

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
// recorded when f changed too near that time to tell (see verifyMargin), or
// when the store no longer knows the blob (removed meanwhile).
func (b *Blobs) SetVerified(dgst digest.Digest, f *os.File, began time.Time) {
	id, ok := identify(f)
	if !ok || id.ctime > began.Add(-verifyMargin).UnixNano() || id.mtime > began.Add(-verifyMargin).UnixNano() {
		return
	}
	b.blobsHere.verified(dgst, id, time.Now())
}
