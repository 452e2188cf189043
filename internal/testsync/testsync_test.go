package testsync

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	var n atomic.Int32
	if !Until(5*time.Second, func() bool { return n.Add(1) >= 3 }) {
		t.Fatal("Until gave up on a condition that came true")
	}
	if got := n.Load(); got != 3 {
		t.Fatalf("cond called %d times, want 3 (it must stop once the condition holds)", got)
	}
	start := time.Now()
	if Until(50*time.Millisecond, func() bool { return false }) {
		t.Fatal("Until reported a condition that never held")
	}
	if el := time.Since(start); el < 50*time.Millisecond {
		t.Fatalf("Until gave up after %s, before its deadline", el)
	}
}

// fakeT records Fatalf instead of ending the test.
type fakeT struct {
	testing.TB
	msg string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
}

func TestWaitForSaysWhatWasAwaited(t *testing.T) {
	ft := &fakeT{TB: t}
	WaitFor(ft, 20*time.Millisecond, "the kettle to boil", func() bool { return false })
	if !strings.Contains(ft.msg, "waiting for the kettle to boil") {
		t.Fatalf("failure message %q does not say what was awaited", ft.msg)
	}
	ft.msg = ""
	WaitFor(ft, time.Second, "nothing", func() bool { return true })
	if ft.msg != "" {
		t.Fatalf("WaitFor failed on a condition that held: %q", ft.msg)
	}
}

func TestBufferConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("x"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if b.Len() != 800 || strings.Count(b.String(), "x") != 800 {
		t.Fatalf("Buffer holds %d bytes, want 800", b.Len())
	}
}
