package scanner

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/pullgate/pullgate/scanner/upx"
)

// UnpackFailedRule is the Rule of a finding for a file that has UPX's
// layout but cannot be unpacked (truncated, an unknown method, a tampered
// block): the program the host would run could not be scanned, or only
// in part, which is never a silent pass.
const UnpackFailedRule = "PackerUnpackFailed"

// maxUnpackDepth bounds how many times unpacked content is itself
// unpacked again (UPX refuses to pack its own output, so more than one
// level is crafted).
const maxUnpackDepth = 3

var elfMagic = []byte{0x7f, 'E', 'L', 'F'}

// isELF reports whether b starts with ELF's magic: only ELF files are
// offered to upx.Unpack.
func isELF(b []byte) bool { return bytes.HasPrefix(b, elfMagic) }

// unpackLimit is the largest restored file upx.Unpack may produce for one
// file: no more than MaxFileBytes, and no more than what is left of
// MaxLayerBytes after every byte read, scanned again or unpacked so far.
func (w *walker) unpackLimit() upx.Limits {
	left := w.s.limits.MaxLayerBytes - w.scanned()
	return upx.Limits{MaxOutput: max(0, min(w.s.limits.MaxFileBytes, left))}
}

// unpack offers a whole ELF file to upx.Unpack. It must be called while
// data is still the walker's (before its buffer is submitted).
func (w *walker) unpack(data []byte) (*upx.Unpacked, error) {
	return upx.Unpack(bytes.NewReader(data), int64(len(data)), w.unpackLimit())
}

// packedLabel says how content was unpacked from the file at a finding's
// path; it follows the path in the finding ("/usr/sbin/x (UPX-packed)").
func packedLabel(u *upx.Unpacked) string {
	if u.MarksAltered {
		return "UPX-packed, marks altered"
	}
	return "UPX-packed"
}

// scanUnpacked acts on what upx.Unpack answered for the file it: nothing
// for a file that is not packed; the restored program scanned with the
// whole ruleset under the same path and exec bit, its findings' paths
// followed by how it was packed; a PackerUnpackFailed finding with the
// reason when it has UPX's layout but cannot be restored (and the PT_LOADs
// scanned when those were restored); a limit error when the restored file
// would not fit in what MaxFileBytes and MaxLayerBytes leave.
func (w *walker) scanUnpacked(it item, u *upx.Unpacked, err error) error {
	switch {
	case err == nil && u == nil, errors.Is(err, upx.ErrNotPacked):
		return nil
	case errors.Is(err, upx.ErrTooLarge):
		return limitError("file %s unpacks (UPX) to more than MaxFileBytes %d or the %d bytes MaxLayerBytes %d leaves: %v",
			it.shown(), w.s.limits.MaxFileBytes, w.unpackLimit().MaxOutput, w.s.limits.MaxLayerBytes, err)
	case err != nil:
		w.unpackFailed(it, err.Error())
		if u == nil {
			return nil
		}
	}
	if it.depth >= maxUnpackDepth {
		w.unpackFailed(it, fmt.Sprintf("the unpacked program is itself packed, more than %d levels deep", maxUnpackDepth))
		return nil
	}
	size := int64(len(u.File))
	w.unpacked += size
	if w.scanned() > w.s.limits.MaxLayerBytes {
		return limitError("file %s unpacks to %d bytes, which takes the bytes scanned past MaxLayerBytes %d", it.shown(), size, w.s.limits.MaxLayerBytes)
	}
	child := it
	child.depth++
	child.label = packedLabel(u)
	if it.label != "" {
		child.label = it.label + "; " + child.label
	}
	_, err = w.scanFile(child, bytes.NewReader(u.File), size)
	return err
}

// unpackFailed records a PackerUnpackFailed finding for it.
func (w *walker) unpackFailed(it item, reason string) {
	w.st.add(Finding{
		Rule:        UnpackFailedRule,
		Category:    CategoryPacker,
		Severity:    SeverityMedium,
		Description: "ELF with UPX's layout that cannot be unpacked, so the program it runs was not scanned whole: " + reason,
		Path:        it.shown(),
		File:        it.file(),
	})
}
