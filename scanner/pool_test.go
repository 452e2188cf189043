package scanner

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitFor polls cond until it holds, failing the test at the deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval, not a wait for an event
	}
}

// With the only worker held, background scans fill the queue; an
// interactive scan submitted after them must run first once the worker is
// free. A FIFO pool fails this test.
func TestInteractiveBeforeBackground(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 1})
	hold := make(chan struct{})
	var (
		mu    sync.Mutex
		order []Priority
		held  bool
	)
	s.testHookJob = func(j *job) {
		mu.Lock()
		order = append(order, j.scan.prio.Priority())
		first := !held
		held = true
		mu.Unlock()
		if first {
			<-hold
		}
	}
	// Files of 600 KiB: one per batch, so one job per file.
	files := make([]tfile, 6)
	for i := range files {
		files[i] = reg("f"+strings.Repeat("x", i), 0o644, strings.Repeat("b", 600<<10))
	}
	layer := tarLayer(t, files...)

	var wg sync.WaitGroup
	scan := func(prio Priority) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.ScanLayer(context.Background(), bytes.NewReader(layer), prio); err != nil {
				t.Error(err)
			}
		}()
	}
	// Each scan may have s.slots jobs in flight: one background job is
	// held by the worker, the rest of the slots fill the queue.
	const background = 3
	for range background {
		scan(Background)
	}
	wantQueued := background*s.slots - 1
	waitFor(t, "background jobs to queue", func() bool { return s.QueueDepth() == wantQueued })
	scan(Interactive)
	waitFor(t, "interactive jobs to queue", func() bool { return s.QueueDepth() == wantQueued+s.slots })
	close(hold)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if order[0] != Background {
		t.Fatalf("first job was %v, want the held background job", order[0])
	}
	for i, p := range order[1 : 1+s.slots] {
		if p != Interactive {
			t.Errorf("job %d after the worker was freed ran at priority %v, want Interactive; order %v", i+1, p, order)
		}
	}
}

// A background scan raised to Interactive while it runs (a client came to
// wait on a prefetch or a rescan) goes ahead of the other background scans
// with the jobs it had already queued.
func TestPromotedScanOvertakesBackground(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 1})
	hold := make(chan struct{})
	var (
		mu    sync.Mutex
		order []*scanState
		held  bool
	)
	s.testHookJob = func(j *job) {
		mu.Lock()
		order = append(order, j.scan)
		first := !held
		held = true
		mu.Unlock()
		if first {
			<-hold
		}
	}
	files := make([]tfile, 2*s.slots) // one job per file
	for i := range files {
		files[i] = reg("f"+strings.Repeat("x", i), 0o644, strings.Repeat("b", 600<<10))
	}
	layer := tarLayer(t, files...)

	var wg sync.WaitGroup
	scan := func(prio Prioritizer) {
		wg.Go(func() {
			if _, err := s.ScanLayer(context.Background(), bytes.NewReader(layer), prio); err != nil {
				t.Error(err)
			}
		})
	}
	const others = 2
	for range others {
		scan(Background)
	}
	wantQueued := others*s.slots - 1
	waitFor(t, "background jobs to queue", func() bool { return s.QueueDepth() == wantQueued })
	promoted := NewPriorityVar(Background)
	scan(promoted)
	waitFor(t, "the last background scan's jobs to queue", func() bool { return s.QueueDepth() == wantQueued+s.slots })
	promoted.Set(Interactive)
	close(hold)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	for i, st := range order[1 : 1+s.slots] {
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
		j, _ := q.pop()
		got = append(got, j.scan)
	}
	if got[0] != st || got[1] != st || got[2] != other {
		t.Fatalf("pop order: promoted %v, %v, then other %v", got[0] == st, got[1] == st, got[2] == other)
	}
}
