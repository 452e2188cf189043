package scanner

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

type derefTarget struct{ n int }

//go:noinline
func derefNil(p *derefTarget) int { return p.n }

// TestScanLeavesGoSignalHandling: a Go program recovers from a nil
// dereference through its SIGSEGV handler. While scans run on other
// threads, that handler must stay Go's (see noTryCatch): with libyara's
// in its place, the process crashed (SIGSEGV in the runtime) within a
// second, or the goroutine never came back.
func TestScanLeavesGoSignalHandling(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	files := make([]tfile, 500)
	for i := range files {
		files[i] = reg(fmt.Sprintf("etc/f%d", i), 0o644, "small")
	}
	layer := tarLayer(t, files...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	scans := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if _, err := s.ScanLayer(ctx, bytes.NewReader(layer), Interactive); err != nil && ctx.Err() == nil {
				scans <- err
				return
			}
		}
		scans <- nil
	}()
	const derefs = 200_000
	recovered := make(chan int, 1)
	go func() {
		n := 0
		for range derefs {
			func() {
				defer func() {
					if recover() != nil {
						n++
					}
				}()
				derefNil(nil)
			}()
		}
		recovered <- n
	}()
	select {
	case n := <-recovered:
		if n != derefs {
			t.Fatalf("recovered %d of %d nil dereferences", n, derefs)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("a nil dereference recovered by Go did not come back while layers were scanned: a signal handler other than Go's caught it")
	}
	cancel()
	if err := <-scans; err != nil {
		t.Fatal(err)
	}
}
