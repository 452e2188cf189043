package scanner

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// A tar inside a file is read as GNU tar and bsdtar read it, not only as
// archive/tar does: where a header does not hold (a junk block between
// members, a checksum that is wrong, a field archive/tar will not parse),
// they skip to the next block that is a header ("Skipping to next
// header") and go on extracting. archive/tar stops there. So the walk
// goes on from that block too (resync), and what it passed over is
// scanned as a file of its own, named by its offset in the tar: a
// member's body behind a header archive/tar refused starts it, as it
// starts what the host's tar writes out (outside attack round 19).

// tarCounter counts the bytes read through it.
type tarCounter struct {
	r io.Reader
	n int64
}

func (c *tarCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// resync reads r, a tar whose last header archive/tar refused, block by
// block up to the next block that is a header (or a zero block: the end,
// or padding), and returns that block, nil at the end of r. The blocks
// before it are scanned as one file of parent, "skipped@<offset>" (at,
// where the first of them starts in the tar), in pieces of one window.
func (w *walker) resync(parent item, r *tarCounter) ([]byte, error) {
	var skipped []byte
	at := r.n
	flush := func() error {
		if len(skipped) == 0 {
			return nil
		}
		child := parent.member(fmt.Sprintf("skipped@%d", at), false)
		if _, err := w.scanFile(child, bytes.NewReader(skipped), int64(len(skipped))); err != nil {
			return err
		}
		at += int64(len(skipped))
		skipped = skipped[:0]
		return nil
	}
	blk := make([]byte, blockSize)
	for {
		if _, err := io.ReadFull(r, blk); err != nil {
			if ferr := flush(); ferr != nil {
				return nil, ferr
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return nil, nil
			}
			return nil, err
		}
		if headerBlock(blk) {
			return blk, flush()
		}
		skipped = append(skipped, blk...)
		if int64(len(skipped)) >= w.s.limits.Window {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
}

// headerBlock says whether blk is a block a tar reader takes for a header
// to resynchronise on: all zeros (the end), or a checksum that holds.
func headerBlock(blk []byte) bool {
	if bytes.Count(blk, []byte{0}) == len(blk) {
		return true
	}
	field := bytes.Trim(blk[148:156], " \x00")
	want, err := strconv.ParseInt(string(field), 8, 64)
	if err != nil || len(field) == 0 {
		return false
	}
	var sum int64
	for i, c := range blk {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	return sum == want
}

// skipBadHeader says whether err, met reading a tar header, is one GNU
// tar skips past.
func skipBadHeader(err error) bool {
	return errors.Is(err, tar.ErrHeader)
}
