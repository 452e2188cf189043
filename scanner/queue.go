package scanner

import "sync"

// queue holds jobs waiting for a worker. Workers always take Interactive
// jobs before Background ones, and among Background jobs first those of a
// scan promoted since they were queued; among Interactive jobs, those of
// the scan due first (see SizedPrioritizer), in order.
type queue struct {
	mu     sync.Mutex
	cond   sync.Cond
	jobs   [2][]*job
	closed bool
}

func newQueue() *queue {
	q := &queue{}
	q.cond.L = &q.mu
	return q
}

func (q *queue) push(j *job) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	p := Background
	if j.scan.prio.Priority() == Interactive {
		p = Interactive
	}
	q.jobs[p] = append(q.jobs[p], j)
	q.cond.Signal()
	return nil
}

// pop blocks until a job is queued, and returns false once the queue is
// closed and drained. Rather than wait, it returns a nil job when stale
// (if not nil) says the caller holds something it should let go of
// before it idles; wake makes waiting callers ask again.
func (q *queue) pop(stale func() bool) (*job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if js := q.jobs[Interactive]; len(js) > 0 {
			first := 0
			for k, j := range js {
				if j.scan.due.Before(js[first].scan.due) {
					first = k
				}
			}
			return q.take(Interactive, first), true
		}
		if bg := q.jobs[Background]; len(bg) > 0 {
			i := 0
			for k, j := range bg {
				if j.scan.prio.Priority() == Interactive {
					i = k
					break
				}
			}
			return q.take(Background, i), true
		}
		if q.closed {
			return nil, false
		}
		if stale != nil && stale() {
			return nil, true
		}
		q.cond.Wait()
	}
}

// take removes and returns the i-th job of priority p; q.mu is held.
func (q *queue) take(p Priority, i int) *job {
	js := q.jobs[p]
	j := js[i]
	if i == 0 {
		js[0] = nil
		q.jobs[p] = js[1:]
		return j
	}
	copy(js[i:], js[i+1:])
	js[len(js)-1] = nil
	q.jobs[p] = js[:len(js)-1]
	return j
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.jobs[Interactive]) + len(q.jobs[Background])
}

// wake makes every waiting pop ask its stale func again.
func (q *queue) wake() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.cond.Broadcast()
}

func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
}
