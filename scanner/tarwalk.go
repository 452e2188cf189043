package scanner

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
)

const blockSize = 512

// errNeedMore marks the end of the bytes isTar was given.
var errNeedMore = errors.New("need more bytes")

// isTar says whether archive/tar, as dockerd and containerd use it, reads
// a stream starting with head (its first two blocks, or all of a shorter
// stream) as a tar: it decides with its own header parsing (either
// checksum, any format). A first header whose entry needs more bytes than
// head holds counts as a tar.
func isTar(head []byte) bool {
	if len(head) < blockSize {
		return false
	}
	var more io.Reader = eofReader{}
	if len(head) == 2*blockSize {
		more = errReaderOf{errNeedMore}
	}
	_, err := tar.NewReader(io.MultiReader(bytes.NewReader(head), more)).Next()
	return err == nil || err == io.EOF || errors.Is(err, errNeedMore)
}

// isV7Tar says whether head starts a tar in the format before ustar,
// which has no magic (tar --format=v7, bsdtar --format=v7): a first
// block that is a header whose checksum holds, with a name and a size,
// whatever its type and other fields (GNU tar extracts an unknown type as
// a regular file, and goes on past a field it cannot read; the walk goes
// on past what archive/tar refuses as GNU tar does, see refused).
func isV7Tar(head []byte) bool {
	if len(head) < blockSize || head[0] == 0 {
		return false
	}
	_, ok := headerSize(head)
	return ok && headerBlock(head[:blockSize])
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type errReaderOf struct{ err error }

func (e errReaderOf) Read([]byte) (int, error) { return 0, e.err }

// walkTar walks a tar as archive/tar reads it, so as dockerd and
// containerd read it. Every entry that carries a body is scanned,
// whatever its type or name: a client may write out any of them (moby
// turns a whiteout-named file under the AUFS hard-link directory into a
// file elsewhere through a hard link). Hard links are scanned again under
// their own name (scanLink).
func (w *walker) walkTar(r io.Reader) error {
	tr := tar.NewReader(r)
	w.links = newLinkStore(linkStoreBytes)
	defer w.links.release()
	for {
		hdr, err := w.nextEntry(tr, "")
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := w.scanXattrs(hdr); err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeLink:
			if err := w.scanLink(hdr); err != nil {
				return err
			}
			continue
		case tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
			// archive/tar gives these no body whatever their size field
			// says; a symlink's target is scanned under its own name.
			continue
		case tar.TypeXGlobalHeader:
			// Its body is PAX records, read by archive/tar; no client
			// writes it out.
			continue
		}
		name := cleanPath(hdr.Name)
		base := path.Base(name)
		if err := w.countFile(name, hdr.Size); err != nil {
			return err
		}
		if w.count.n+hdr.Size > w.count.limit {
			return limitError("file %s (%d bytes) takes the layer past MaxLayerBytes %d", name, hdr.Size, w.count.limit)
		}
		var body io.Reader = tr
		ring, start, kept := w.links.keep(hdr.Size)
		if kept {
			body = io.TeeReader(tr, ring)
		}
		exec, err := w.scanFile(item{path: name, name: base, ext: extension(base), exec: hdr.Mode&0o111 != 0}, body, hdr.Size)
		if err != nil {
			return err
		}
		w.links.add(hdr.Name, name, &linkEntry{start: start, size: hdr.Size, kept: kept, exec: exec})
	}
}

// countFile counts one more file scanned and checks MaxFiles and
// MaxFileBytes.
func (w *walker) countFile(name string, size int64) error {
	w.files++
	if w.files > w.s.limits.MaxFiles {
		return limitError("layer has more than MaxFiles %d files", w.s.limits.MaxFiles)
	}
	if size > w.s.limits.MaxFileBytes {
		return limitError("file %s is %d bytes, more than MaxFileBytes %d", name, size, w.s.limits.MaxFileBytes)
	}
	return nil
}

// scanLink scans a hard link's target content again under the link's
// path, so a finding names the path the host will see and rules that
// look at names judge that name. The link shares its target's inode, and
// a client sets the inode's mode to the link's (moby's UnpackLayer
// does): the link is scanned as executable when either is, and when the
// link makes a non-executable inode executable, the inode's earlier names
// are scanned again as executable.
//
// The target must be a regular file (or a hard link to one) earlier in
// this layer, or one of moby's AUFS hard-link files; anything else is
// refused as corrupt: a tar writer emits a link only after its target,
// and a link into an earlier layer would carry content this scan cannot
// see under a name it chose. When the target's content is no longer in
// the link store (larger than the store, or pushed out by later files),
// the link is scanned by name only: an empty body with the exec bit,
// which is what rules on names and paths look at; the content itself was
// scanned under the target's own name.
func (w *walker) scanLink(hdr *tar.Header) error {
	name := cleanPath(hdr.Name)
	e, viaPlnk, ok := w.links.resolve(hdr.Linkname)
	if !ok {
		return corruptError("hard link "+name, fmt.Errorf("target %q is not a regular file earlier in this layer", hdr.Linkname))
	}
	linkExec := hdr.Mode&0o111 != 0
	if !e.exec && e.names == nil && !viaPlnk {
		// The target's own path, in case a later link makes it executable;
		// AUFS hard-link files are not written under their own path.
		if err := w.links.addName(e, cleanPath(hdr.Linkname)); err != nil {
			return err
		}
	}
	if linkExec && !e.exec {
		for _, n := range e.names {
			if _, err := w.scanAs(n, e, true); err != nil {
				return err
			}
		}
		e.names = nil
		e.exec = true
	}
	exec, err := w.scanAs(name, e, e.exec || linkExec)
	if err != nil {
		return err
	}
	e.exec = e.exec || exec
	if !e.exec {
		if err := w.links.addName(e, name); err != nil {
			return err
		}
	}
	w.links.add(hdr.Name, name, e)
	return nil
}

// scanAs scans a kept entry's content under name (by name only when the
// content is no longer kept). The bytes count against MaxLayerBytes.
func (w *walker) scanAs(name string, e *linkEntry, exec bool) (bool, error) {
	base := path.Base(name)
	if err := w.countFile(name, e.size); err != nil {
		return false, err
	}
	body, kept := w.links.content(e)
	size := e.size
	if !kept {
		body, size = bytes.NewReader(nil), 0
	}
	w.rescanned += size
	if w.count.n+w.rescanned > w.count.limit {
		return false, limitError("hard link %s takes the bytes scanned past MaxLayerBytes %d", name, w.count.limit)
	}
	return w.scanFile(item{path: name, name: base, ext: extension(base), exec: exec}, body, size)
}

// nextEntry reads the next header of a tar being walked, once the scan is
// still wanted: a cancelled scan or a worker's error is returned as it is
// (explain tells them apart by identity), a header that does not parse is
// wrapped with where it was read (in: "" for the layer itself).
func (w *walker) nextEntry(tr *tar.Reader, in string) (*tar.Header, error) {
	if err := w.st.ctx.Err(); err != nil {
		return nil, err
	}
	if err := w.st.firstErr(); err != nil {
		return nil, err
	}
	hdr, err := tr.Next()
	switch {
	case err == nil, err == io.EOF:
		return hdr, err
	case in == "":
		return nil, fmt.Errorf("read tar header: %w", err)
	}
	return nil, fmt.Errorf("read tar header in %s: %w", in, err)
}

// walkTrailer scans what follows a tar's end-of-archive blocks as one raw
// file "/": no tar reader looks at it, but an artifact's reader, or a
// puller that reads files by offset, may.
func (w *walker) walkTrailer(r io.Reader) error {
	return w.afterZeros(r, w.walkRaw)
}

// afterZeros skips zeros (a tar's record padding, or a bomb of them:
// nothing to scan) and hands what follows the first byte that is not zero,
// if any, to scan.
func (w *walker) afterZeros(r io.Reader, scan func(io.Reader) error) error {
	br := bufio.NewReaderSize(r, 32<<10)
	for {
		p, err := br.Peek(32 << 10)
		if i := slices.IndexFunc(p, func(b byte) bool { return b != 0 }); i >= 0 {
			if _, err := br.Discard(i); err != nil {
				return err
			}
			return scan(br)
		}
		if _, derr := br.Discard(len(p)); derr != nil {
			return derr
		}
		switch {
		case err == io.EOF:
			return nil
		case err != nil && err != bufio.ErrBufferFull:
			return err
		}
	}
}

// walkRaw scans a blob that is not a tar as one file named "/".
func (w *walker) walkRaw(r io.Reader) error {
	w.files++
	_, err := w.scanFile(item{path: "/", name: "", ext: ""}, r, -1)
	return err
}
