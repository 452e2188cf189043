package isal

import (
	"bytes"
	"crypto/sha256"
	"io"
	"runtime"
	"testing"
	"time"
)

// hashRate is the best of seven SHA-256 passes over buf, in bytes per
// second, on the calling (locked) thread.
func hashRate(buf []byte) float64 {
	best := time.Duration(1<<63 - 1)
	for range 7 {
		start := time.Now()
		sha256.Sum256(buf)
		best = min(best, time.Since(start))
	}
	return float64(len(buf)) / best.Seconds()
}

// TestInflateLeavesVectorStateClean checks that an inflate does not leave
// the upper halves of the vector registers dirty on its thread. ISA-L's
// AVX code returns without vzeroupper; Go's SHA-NI code uses legacy SSE
// encodings, which run many times slower on a thread whose upper state is
// dirty, until something clears it. The comparison is a ratio of two rates
// on one thread in one process, not a timed assertion.
func TestInflateLeavesVectorStateClean(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	buf := bytes.Repeat([]byte("pullgate"), 1<<20) // 8 MiB
	blob := gz(t, sample(4<<20))
	before := hashRate(buf)

	z, err := NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, z); err != nil {
		t.Fatal(err)
	}
	z.Close()
	after := hashRate(buf)

	t.Logf("SHA-256 on this thread: %.0f MB/s before an inflate, %.0f MB/s after", before/1e6, after/1e6)
	if after < before/2 {
		t.Fatalf("SHA-256 after an inflate runs at %.0f MB/s, less than half the %.0f MB/s before it: the vector state was left dirty", after/1e6, before/1e6)
	}
}

// TestInflateClearsTheUpperState checks the same on the CPU's own record:
// XINUSE says whether any YMM upper half is in use. Unlike the speed
// ratio above, it fails on every CPU whose ISA-L takes an AVX path when
// the clear is missing, not only on cores that pay for a dirty state.
func TestInflateClearsTheUpperState(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if dirtyThenLook() != 1 || dirtyClearLook() != 0 {
		t.Skip("this CPU does not report the YMM state in use (XGETBV with ECX=1)")
	}
	data := sample(8 << 20)
	out := make([]byte, len(data))
	switch got := inflateThenLook(gz(t, data), out); got {
	case 0:
	case 1:
		t.Fatal("the YMM upper state is dirty after an inflate step: the return from ISA-L does not clear it")
	default:
		t.Fatalf("inflate probe failed: %d", got)
	}
	if !bytes.Equal(out, data) {
		t.Fatal("the probe's inflate made other bytes")
	}
}
