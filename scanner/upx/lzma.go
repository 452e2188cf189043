package upx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// lzmaDecompress decodes one UPX LZMA block into dst, which must be exactly
// filled. UPX writes two bytes of properties, ((lc+lp)<<3)|pb and
// (lp<<4)|lc, and then the raw LZMA stream without an end marker; the
// decoder is given the classic 13-byte header built from them, with the
// block's size as the uncompressed size, so it stops there.
func lzmaDecompress(src, dst []byte) error {
	if len(src) < 3 {
		return errors.New("LZMA block shorter than its properties")
	}
	pb, lp, lc := int(src[0]&7), int(src[1]>>4), int(src[1]&15)
	if pb > 4 || lp > 4 || lc > 8 || int(src[0]>>3) != lc+lp {
		return fmt.Errorf("LZMA properties %02x %02x are not valid", src[0], src[1])
	}
	var hdr [13]byte
	hdr[0] = byte((pb*5+lp)*9 + lc)
	// The dictionary never needs to be larger than the block itself.
	dict := max(uint32(len(dst)), lzma.MinDictCap)
	binary.LittleEndian.PutUint32(hdr[1:], dict)
	binary.LittleEndian.PutUint64(hdr[5:], uint64(len(dst)))
	// One bytes.Reader over header and stream: the decoder reads it byte
	// by byte directly instead of through a buffering wrapper.
	in := make([]byte, 0, len(hdr)+len(src)-2)
	in = append(append(in, hdr[:]...), src[2:]...)
	r, err := lzma.NewReader(bytes.NewReader(in))
	if err != nil {
		return fmt.Errorf("LZMA block: %w", err)
	}
	if _, err := io.ReadFull(r, dst); err != nil {
		return fmt.Errorf("LZMA block of %d bytes: %w", len(dst), err)
	}
	if n, _ := r.Read(make([]byte, 1)); n != 0 {
		return errors.New("LZMA block decodes past its declared size")
	}
	return nil
}
