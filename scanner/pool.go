package scanner

import (
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/hillu/go-yara/v4"
)

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
	// A worker about to idle lets go of replaced rules (the rules were
	// reloaded while it waited, or it ran a job of a scan pinned to older
	// rules), so they are freed now rather than at its next job.
	stale := func() bool { return w.rs != nil && w.rs != w.s.peek() }
	for {
		j, ok := w.s.queue.pop(stale)
		if !ok {
			return
		}
		if j == nil {
			w.release()
			continue
		}
		w.s.busy.Add(1)
		w.do(j)
	}
}

func (w *worker) do(j *job) {
	st := j.scan
	defer func() {
		if j.buf != nil {
			j.buf.put()
		}
		if j.file != nil {
			j.file.Close()
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
	scan := func() error { return w.ys.ScanMem(it.data) }
	if it.spooled != nil {
		scan = func() error { return w.ys.ScanFileDescriptor(it.spooled.Fd()) }
	}
	if err := scan(); err != nil {
		if time.Now().After(st.deadline) {
			return st.ctx.Err()
		}
		return fmt.Errorf("yara scan of %s: %w", it.path, err)
	}
	for _, rule := range w.matches {
		m := st.rs.metas[rule]
		st.add(Finding{Rule: rule, Category: m.category, Severity: m.severity, Description: m.description, Path: it.shown(), File: it.file()})
	}
	if it.hash && it.spooled == nil && st.rs.knownBad != nil {
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
