package scanner

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"github.com/hillu/go-yara/v4"
)

// item is one piece of content to scan: a whole small file, one window of
// a large file, or one field of an image config.
type item struct {
	path string // "/usr/bin/x" or "config:Cmd"
	name string // "x"
	ext  string // "sh"
	exec bool
	hash bool // a whole file to check against the known-bad list
	data []byte
	// label says how the content was unpacked from the file at path
	// ("UPX-packed"), empty for a file's own bytes; depth counts the
	// unpackings. Rules see path; findings name path and label.
	label string
	depth int
	// where is the path findings name for a member of an archive or a
	// payload decoded from a file ("/opt/a.tar.gz!x/xmrig"), whose path
	// is what rules see ("/x/xmrig"); outer is then the layer's file it
	// was found in, and nest how many archives deep it is.
	where string
	outer string
	nest  int
}

// file is a finding's File: the layer's file, for content unpacked from it.
func (it *item) file() string {
	if it.outer != "" {
		return it.outer
	}
	if it.label == "" {
		return ""
	}
	return it.path
}

// shown is the path findings name: the path (or, inside an archive, the
// whole path through it), followed by how the content was unpacked from
// it, if it was.
func (it *item) shown() string {
	p := it.path
	if it.where != "" {
		p = it.where
	}
	if it.label == "" {
		return p
	}
	return p + " (" + it.label + ")"
}

// job is what a worker takes from the queue: one buffer's worth of items.
// Small files are packed several to a buffer to keep per-job overhead off
// layers made of thousands of tiny files.
type job struct {
	scan  *scanState
	buf   *buffer // returned to its pool when the job is done; nil when items point into caller memory
	items []item
}

// scanState is shared by the walker of one ScanLayer/ScanConfig call and
// the workers scanning its jobs.
type scanState struct {
	ctx      context.Context
	deadline time.Time
	context  string // contextLayer or contextConfig
	prio     Prioritizer
	rs       *ruleset // pinned for the whole scan; every job runs under it
	// slots bounds the jobs (and so the buffers) in flight for this scan:
	// the walker sends before taking a buffer, a worker receives when done.
	slots chan struct{}

	mu       sync.Mutex
	seen     map[Finding]struct{}
	findings []Finding
	err      error
}

func (st *scanState) add(f Finding) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, dup := st.seen[f]; dup {
		return
	}
	st.seen[f] = struct{}{}
	st.findings = append(st.findings, f)
}

// fail records the first error a worker hit; the walker returns it.
func (st *scanState) fail(err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.err == nil {
		st.err = err
	}
}

func (st *scanState) firstErr() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.err
}

// acquire takes a slot, waiting while the scan has its maximum of jobs in
// flight.
func (st *scanState) acquire() error {
	select {
	case st.slots <- struct{}{}:
		return nil
	case <-st.ctx.Done():
		return st.ctx.Err()
	}
}

func (st *scanState) release() { <-st.slots }

// wait returns when every submitted job has been scanned.
func (st *scanState) wait() error {
	for range cap(st.slots) {
		if err := st.acquire(); err != nil {
			return err
		}
	}
	for range cap(st.slots) {
		st.release()
	}
	return nil
}

// drain waits for every submitted job regardless of the context, for
// scans whose jobs point into the caller's memory.
func (st *scanState) drain() {
	for range cap(st.slots) {
		st.slots <- struct{}{}
	}
	for range cap(st.slots) {
		st.release()
	}
}

// result returns the findings, sorted.
func (st *scanState) result() []Finding {
	st.mu.Lock()
	defer st.mu.Unlock()
	fs := append([]Finding(nil), st.findings...)
	sortFindings(fs)
	return fs
}

// queue holds jobs waiting for a worker. Workers always take Interactive
// jobs before Background ones, and among Background jobs first those of a
// scan promoted since they were queued; otherwise jobs run in order.
type queue struct {
	mu     sync.Mutex
	cond   sync.Cond
	jobs   [2][]*job
	closed bool
	gen    uint64 // counts wake calls, so an idle worker sees each one
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
// closed and drained. It also returns, with a nil job, when wake was
// called since gen was read: *gen is then brought up to date.
func (q *queue) pop(gen *uint64) (*job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if len(q.jobs[Interactive]) > 0 {
			return q.take(Interactive, 0), true
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
		if q.gen != *gen {
			*gen = q.gen
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

// wake makes every idle worker return from pop once.
func (q *queue) wake() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.gen++
	q.cond.Broadcast()
}

func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
}

// worker owns one yara.Scanner (they are not goroutine-safe), created from
// the ruleset rs it holds, and the external variables last defined on it,
// so unchanged ones are not redefined for every file.
type worker struct {
	s       *Scanner
	rs      *ruleset // nil when the worker holds no rules
	ys      *yara.Scanner
	matches matchList
	timeout int64 // seconds last set on ys; 0: none

	defined              bool
	path, name, ext, ctx string
	exec                 bool
}

// use makes the worker scan under rs, replacing its yara.Scanner when it
// was made from other rules. Called between jobs only.
func (w *worker) use(rs *ruleset) error {
	if w.rs == rs {
		return nil
	}
	ys, err := yara.NewScanner(rs.rules)
	if err != nil {
		return fmt.Errorf("create yara scanner: %w", err)
	}
	rs.hold()
	w.release()
	w.rs, w.ys = rs, ys
	ys.SetCallback(&w.matches)
	ys.SetFlags(w.s.flags)
	w.defined, w.timeout = false, 0
	return nil
}

// release frees the worker's yara.Scanner and its hold on the rules.
func (w *worker) release() {
	if w.ys != nil {
		w.ys.Destroy()
		w.ys = nil
	}
	if w.rs != nil {
		w.rs.drop()
		w.rs = nil
	}
}

func (w *worker) run() {
	defer w.release()
	var gen uint64
	for {
		j, ok := w.s.queue.pop(&gen)
		if !ok {
			return
		}
		if j != nil {
			w.s.busy.Add(1)
			w.do(j)
		}
		// A worker about to idle lets go of replaced rules (it was woken
		// by a reload, or ran a job of a scan pinned to older rules), so
		// they are freed now rather than at its next job.
		if w.rs != nil && w.rs != w.s.peek() && w.s.queue.len() == 0 {
			w.release()
		}
	}
}

func (w *worker) do(j *job) {
	st := j.scan
	defer func() {
		if j.buf != nil {
			j.buf.put()
		}
		// Not busy before the slot is released, so a caller that sees its
		// scan finished never sees its work still counted.
		w.s.busy.Add(-1)
		st.release()
		st.rs.drop()
	}()
	if hook := w.s.testHookJob; hook != nil {
		hook(j)
	}
	if st.ctx.Err() != nil || st.firstErr() != nil {
		return
	}
	if err := w.use(st.rs); err != nil {
		st.fail(err)
		return
	}
	for i := range j.items {
		if st.ctx.Err() != nil {
			return
		}
		if err := w.scan(st, &j.items[i]); err != nil {
			st.fail(err)
			return
		}
	}
}

func (w *worker) scan(st *scanState, it *item) error {
	if err := w.define(st.context, it); err != nil {
		return fmt.Errorf("set yara externals for %s: %w", it.path, err)
	}
	left := time.Until(st.deadline)
	if left <= 0 {
		return st.ctx.Err()
	}
	// YARA counts timeouts in whole seconds; round up so a scan is never
	// cut short before the layer's own deadline.
	if secs := int64((left + time.Second - 1) / time.Second); secs != w.timeout {
		w.ys.SetTimeout(time.Duration(secs) * time.Second)
		w.timeout = secs
	}
	w.matches = w.matches[:0]
	if err := w.ys.ScanMem(it.data); err != nil {
		if time.Now().After(st.deadline) {
			return st.ctx.Err()
		}
		return fmt.Errorf("yara scan of %s: %w", it.path, err)
	}
	for _, rule := range w.matches {
		m := st.rs.metas[rule]
		st.add(Finding{Rule: rule, Category: m.category, Severity: m.severity, Description: m.description, Path: it.shown(), File: it.file()})
	}
	if it.hash && st.rs.knownBad != nil {
		if f, ok := st.rs.knownBad.finding(sha256.Sum256(it.data), it.shown()); ok {
			f.File = it.file()
			st.add(f)
		}
	}
	return nil
}

// define sets the per-file externals, skipping those that did not change
// since the last scan on this worker.
func (w *worker) define(ctx string, it *item) error {
	strs := [...]struct {
		name  string
		cur   *string
		value string
	}{
		{extFilepath, &w.path, it.path},
		{extFilename, &w.name, it.name},
		{extExtension, &w.ext, it.ext},
		{extContext, &w.ctx, ctx},
	}
	for _, v := range strs {
		if w.defined && *v.cur == v.value {
			continue
		}
		if err := w.ys.DefineVariable(v.name, v.value); err != nil {
			w.defined = false
			return err
		}
		*v.cur = v.value
	}
	if !w.defined || w.exec != it.exec {
		if err := w.ys.DefineVariable(extExecutable, it.exec); err != nil {
			w.defined = false
			return err
		}
		w.exec = it.exec
	}
	w.defined = true
	return nil
}

// matchList collects the identifiers of the rules that matched one scan.
type matchList []string

func (m *matchList) RuleMatching(_ *yara.ScanContext, r *yara.Rule) (bool, error) {
	*m = append(*m, r.Identifier())
	return false, nil
}
