package scanner

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testsync"
)

// heldPool is a one-worker scanner whose first job is held until release:
// the scans started meanwhile fill the queue, and order records whose job
// the worker took next, one job per file of layer.
type heldPool struct {
	s     *Scanner
	layer []byte
	hold  chan struct{}
	wg    sync.WaitGroup

	mu    sync.Mutex
	order []*scanState
	held  bool
}

func newHeldPool(t *testing.T, files int) *heldPool {
	h := &heldPool{s: newTestScanner(t, Options{Workers: 1}), hold: make(chan struct{})}
	h.s.testHookJob = func(j *job) {
		h.mu.Lock()
		h.order = append(h.order, j.scan)
		first := !h.held
		h.held = true
		h.mu.Unlock()
		if first {
			<-h.hold
		}
	}
	// Files of 600 KiB: one per batch, so one job per file.
	fs := make([]tfile, files)
	for i := range fs {
		fs[i] = reg("f"+strings.Repeat("x", i), 0o644, strings.Repeat("b", 600<<10))
	}
	h.layer = tarLayer(t, fs...)
	return h
}

// scan starts a scan of the layer and waits until all its slots are queued
// (less the held job).
func (h *heldPool) scan(t *testing.T, prio Prioritizer) {
	before := h.s.QueueDepth()
	h.wg.Go(func() {
		if _, err := h.s.ScanLayer(context.Background(), bytes.NewReader(h.layer), prio); err != nil {
			t.Error(err)
		}
	})
	want := before + h.s.slots
	if before == 0 {
		want-- // the first scan's first job is the held one
	}
	testsync.WaitFor(t, 10*time.Second, "the scan's jobs to queue", func() bool { return h.s.QueueDepth() == want })
}

// release frees the worker, waits for every scan and returns the order.
func (h *heldPool) release() []*scanState {
	close(h.hold)
	h.wg.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.order
}

// With the only worker held, background scans fill the queue; an
// interactive scan submitted after them must run first once the worker is
// free. A FIFO pool fails this test.
func TestInteractiveBeforeBackground(t *testing.T) {
	h := newHeldPool(t, 6)
	for range 3 {
		h.scan(t, Background)
	}
	h.scan(t, Interactive)
	order := h.release()
	if p := order[0].prio.Priority(); p != Background {
		t.Fatalf("first job was %v, want the held background job", p)
	}
	for i, st := range order[1 : 1+h.s.slots] {
		if p := st.prio.Priority(); p != Interactive {
			t.Errorf("job %d after the worker was freed ran at priority %v, want Interactive", i+1, p)
		}
	}
}

// A background scan raised to Interactive while it runs (a client came to
// wait on a prefetch or a rescan) goes ahead of the other background scans
// with the jobs it had already queued.
func TestPromotedScanOvertakesBackground(t *testing.T) {
	h := newHeldPool(t, 4)
	for range 2 {
		h.scan(t, Background)
	}
	promoted := NewPriorityVar(Background)
	h.scan(t, promoted)
	promoted.Set(Interactive)
	order := h.release()
	for i, st := range order[1 : 1+h.s.slots] {
		if st.prio != Prioritizer(promoted) {
			t.Fatalf("job %d after the worker was freed belongs to another background scan; the promoted scan's queued jobs should come first", i+1)
		}
	}
}

// Work a promoted scan queues after its promotion is interactive work.
func TestPromotedScanQueuesInteractive(t *testing.T) {
	q := newQueue()
	prio := NewPriorityVar(Background)
	st := &scanState{prio: prio}
	other := &scanState{prio: Background}
	for _, j := range []*job{{scan: other}, {scan: st}} {
		if err := q.push(j); err != nil {
			t.Fatal(err)
		}
	}
	prio.Set(Interactive)
	late := &job{scan: st}
	if err := q.push(late); err != nil {
		t.Fatal(err)
	}
	if len(q.jobs[Interactive]) != 1 || q.jobs[Interactive][0] != late {
		t.Fatalf("the job queued after the promotion is not in the interactive queue")
	}
	var got []*scanState
	for range 3 {
		j, _ := q.pop(nil)
		got = append(got, j.scan)
	}
	if got[0] != st || got[1] != st || got[2] != other {
		t.Fatalf("pop order: promoted %v, %v, then other %v", got[0] == st, got[1] == st, got[2] == other)
	}
}

// Among interactive scans, the jobs of the scan due first run first: a
// small layer's scan submitted after a large one's goes ahead of it, and
// a large one that has waited as long as its size says goes ahead of a
// small one that comes later. A FIFO pool fails this test.
func TestSmallerScanDueFirst(t *testing.T) {
	h := newHeldPool(t, 8)
	large := WithSize(Interactive, 1<<30) // due in some 32 s
	h.scan(t, large)
	small := WithSize(Interactive, 1<<20) // due in some 31 ms
	h.scan(t, small)
	order := h.release()
	for i, st := range order[1 : 1+h.s.slots] {
		if st.prio != Prioritizer(small) {
			t.Fatalf("job %d after the worker was freed belongs to the large scan; the small scan's should come first", i+1)
		}
	}

	q := newQueue()
	waited := &scanState{prio: Interactive, due: time.Now().Add(-time.Second)}
	late := &scanState{prio: Interactive, due: time.Now().Add(time.Millisecond)}
	for _, j := range []*job{{scan: late}, {scan: waited}, {scan: late}} {
		if err := q.push(j); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []*scanState{waited, late, late} {
		if j, _ := q.pop(nil); j.scan != want {
			t.Fatalf("pop %d: the job of the scan due %v, want the one due %v", i, j.scan.due, want.due)
		}
	}
}
