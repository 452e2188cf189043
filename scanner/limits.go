package scanner

import (
	"errors"
	"fmt"
	"time"
)

// ErrLimit is wrapped by every error caused by a limit; errors.Is(err, ErrLimit).
var ErrLimit = errors.New("scan limit exceeded")

// ErrCorrupt is wrapped when the content cannot be decoded as its clients
// decode it: a broken compressed stream, a layer that is not a tar, or a
// hard link to content the layer does not hold.
var ErrCorrupt = errors.New("corrupt layer")

// errSpool is wrapped when a large zip cannot be written to or read from
// its temporary file: the machine's fault, not the content's.
var errSpool = errors.New("spool")

// ErrClosed is returned by scans submitted after Close.
var ErrClosed = errors.New("scanner closed")

// windowOverlap is how many bytes consecutive windows of a large file
// share, so an indicator that straddles a window boundary is still seen
// whole by one scan. It bounds the longest indicator that is guaranteed to
// be found across boundaries.
const windowOverlap = 64 << 10

// minWindow keeps windows large compared to their overlap, so large files
// are not rescanned many times over.
const minWindow = 4 * windowOverlap

// Limits bound the work and memory one layer may cost. Every limit fails
// closed: exceeding it is an error wrapping ErrLimit.
type Limits struct {
	MaxLayerBytes int64         // decompressed bytes per layer (gzip/zstd bombs); default 8 GiB
	MaxFiles      int64         // regular files per layer; default 1,000,000
	MaxFileBytes  int64         // bytes scanned per file; files larger than Window are scanned in overlapping windows up to this; default 2 GiB; beyond it: limit error
	Window        int64         // scan window (and max buffer) size; default 16 MiB; windows overlap by 64 KiB so an indicator across a boundary is still found
	LayerTimeout  time.Duration // wall time per layer; default 10 min
	// MaxArchiveDepth is how many archives deep (a .tar.gz in a zip in a
	// layer is two) files and encoded payloads are unpacked and scanned;
	// default 3. An archive deeper than that is reported as ArchiveTooDeep.
	MaxArchiveDepth int
}

// DefaultLimits returns the limits used for zero fields of Options.Limits.
func DefaultLimits() Limits {
	return Limits{
		MaxLayerBytes:   8 << 30,
		MaxFiles:        1_000_000,
		MaxFileBytes:    2 << 30,
		Window:          16 << 20,
		LayerTimeout:    10 * time.Minute,
		MaxArchiveDepth: 3,
	}
}

// withDefaults fills zero fields with defaults and rejects values that
// cannot work.
func (l Limits) withDefaults() (Limits, error) {
	d := DefaultLimits()
	if l.MaxLayerBytes == 0 {
		l.MaxLayerBytes = d.MaxLayerBytes
	}
	if l.MaxFiles == 0 {
		l.MaxFiles = d.MaxFiles
	}
	if l.MaxFileBytes == 0 {
		l.MaxFileBytes = d.MaxFileBytes
	}
	if l.Window == 0 {
		l.Window = d.Window
	}
	if l.LayerTimeout == 0 {
		l.LayerTimeout = d.LayerTimeout
	}
	if l.MaxArchiveDepth == 0 {
		l.MaxArchiveDepth = d.MaxArchiveDepth
	}
	switch {
	case l.MaxLayerBytes < 0, l.MaxFiles < 0, l.MaxFileBytes < 0, l.LayerTimeout < 0, l.MaxArchiveDepth < 0:
		return l, fmt.Errorf("scanner limits must not be negative: %+v", l)
	case l.Window < minWindow:
		return l, fmt.Errorf("scanner window %d is below the minimum of %d bytes", l.Window, minWindow)
	case l.Window > 1<<30:
		return l, fmt.Errorf("scanner window %d is above the maximum of 1 GiB", l.Window)
	}
	return l, nil
}

// limitError builds an error wrapping ErrLimit that names the limit and
// its value.
func limitError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrLimit, fmt.Sprintf(format, args...))
}

// errUnsupported marks a stream or member that tools on a host unpack and
// pullgate's decoders do not (an xz filter, a bzip2 mode): what it holds
// was never scanned, so it is refused (a high ArchiveUnreadable), where a
// corrupt one, which no tool unpacks either, is only reported.
var errUnsupported = errors.New("pullgate cannot decode it, so what it holds was never scanned and it is refused")

// unsupportedError builds an error wrapping errUnsupported.
func unsupportedError(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errUnsupported)
}

// unreadableSeverity is the severity of ArchiveUnreadable for err, met
// reading an archive or a member: high when tools unpack what pullgate
// could not (errUnsupported), low otherwise.
func unreadableSeverity(err error) string {
	if errors.Is(err, errUnsupported) {
		return SeverityHigh
	}
	return SeverityLow
}

// corruptError builds an error wrapping ErrCorrupt and the cause.
func corruptError(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
}
