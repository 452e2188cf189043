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

// tarCounter counts the bytes read through it, and keeps the last block
// and the tar's own bytes (see tarOwn).
type tarCounter struct {
	r    io.Reader
	n    int64
	last []byte // the last blockSize bytes read
	own  tarOwn
	// tee, when set, is written what is read (see sparseBody); teeErr
	// is its first error.
	tee    *spool
	teeErr error
}

func (c *tarCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.own.add(p[:n])
	if c.tee != nil && c.teeErr == nil {
		c.teeErr = c.tee.write(p[:n])
	}
	if c.own.err != nil {
		return n, c.own.err
	}
	if n >= blockSize {
		c.last = append(c.last[:0], p[n-blockSize:n]...)
	} else {
		c.last = append(c.last, p[:n]...)
		c.last = c.last[max(0, len(c.last)-blockSize):]
	}
	return n, err
}

// refused goes on past the header block archive/tar refused, the last
// block r read, as GNU tar does: a block whose checksum holds is a header
// it still uses, and a regular file's body, as long as the block says, is
// written out (a non-octal device number does not stop it); any other
// block is skipped to the next header (see resync), itself among the bytes
// skipped. It returns the block to go on from, nil at r's end.
func (w *walker) refused(parent item, r *tarCounter) ([]byte, error) {
	blk := bytes.Clone(r.last)
	if len(blk) < blockSize || !headerBlock(blk) {
		return w.resync(parent, r, blk)
	}
	size, ok := headerSize(blk)
	if !ok || !gnuRegular(blk[156]) {
		return w.resync(parent, r, nil)
	}
	name := string(bytes.TrimRight(blk[:100], "\x00"))
	if bytes.Equal(blk[257:262], ustarMagic) {
		if prefix := bytes.TrimRight(blk[345:500], "\x00"); len(prefix) > 0 {
			name = string(prefix) + "/" + name
		}
	}
	mode, _ := strconv.ParseInt(string(bytes.Trim(blk[100:108], " \x00")), 8, 64)
	child := parent.member(memberName(name), mode&0o111 != 0)
	n, err := w.countMember(child.where, size)
	if err != nil {
		return nil, err
	}
	if err := r.own.body(func() error {
		_, err := w.scanFile(child, io.LimitReader(r, size), n)
		return err
	}); err != nil {
		return nil, err
	}
	if _, err := io.CopyN(io.Discard, r, (blockSize-size%blockSize)%blockSize); err != nil {
		return nil, nil
	}
	return w.resync(parent, r, nil)
}

// headerSize is the size a header block gives its body, in octal or in
// base 256, as GNU tar reads it.
func headerSize(blk []byte) (int64, bool) {
	field := blk[124:136]
	if field[0]&0x80 != 0 {
		var n int64
		for i, c := range field {
			if i == 0 {
				c &= 0x7f
			}
			if n > (1<<62)>>8 {
				return 0, false
			}
			n = n<<8 | int64(c)
		}
		return n, true
	}
	n, err := strconv.ParseInt(string(bytes.Trim(field, " \x00")), 8, 64)
	return n, err == nil && n >= 0
}

// resync reads r, a tar whose last header archive/tar refused, block by
// block up to the next block that is a header (or a zero block: the end,
// or padding), and returns that block, nil at the end of r. The blocks
// before it, after skipped (read already), are scanned as one file of
// parent, "skipped@<offset>" (where the first of them starts in the tar),
// in pieces of one window.
func (w *walker) resync(parent item, r *tarCounter, skipped []byte) ([]byte, error) {
	// What is skipped is scanned as a file of its own, not kept as the
	// tar's own bytes.
	r.own.paused = true
	defer func() { r.own.paused = false }()
	at := r.n - int64(len(skipped))
	if rest := (blockSize - r.n%blockSize) % blockSize; rest > 0 {
		// archive/tar stopped inside a block (a PAX record it read
		// 1 MiB of): blocks start at whole multiples of blockSize.
		b := make([]byte, rest)
		n, _ := io.ReadFull(r, b)
		skipped = append(skipped, b[:n]...)
	}
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
		if n, err := io.ReadFull(r, blk); err != nil {
			skipped = append(skipped, blk[:n]...)
			if ferr := flush(); ferr != nil {
				return nil, ferr
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return nil, nil
			}
			return nil, err
		}
		if headerBlock(blk) {
			r.own.keepRead(blk)
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
	// Summed as unsigned bytes, or as signed ones as some old tars did:
	// GNU tar takes either.
	var sum, signed int64
	for i, c := range blk {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
		signed += int64(int8(c))
	}
	return sum == want || signed == want
}

// gnuRegular says whether GNU tar writes a header of type typ out as a
// regular file, with its body: a regular file's types, and any type it
// does not know ("Unknown file type, extracted as normal file").
func gnuRegular(typ byte) bool {
	return !bytes.ContainsRune([]byte("123456xgLKSVMDNAEIX"), rune(typ))
}

// skipBadHeader says whether err, met reading a tar header, is one GNU
// tar goes on past: a header archive/tar cannot use, or a PAX record or
// long name over the 1 MiB archive/tar reads.
func skipBadHeader(err error) bool {
	return errors.Is(err, tar.ErrHeader) || errors.Is(err, tar.ErrFieldTooLong) || errors.Is(err, io.ErrUnexpectedEOF)
}
