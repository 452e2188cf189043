package scanner

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/hillu/go-yara/v4"
)

// Version is the scanner's own version; it is part of the ruleset id, so
// a change in how content is walked or scanned makes old verdicts stale.
const Version = "pullgate-scanner/4"

// Priority orders work in the pool.
type Priority int

const (
	Interactive Priority = iota // someone is waiting on this scan
	Background                  // rescans, prefetch; yields to Interactive work
)

// A Prioritizer gives a scan's priority each time the scan queues work, so
// that a scan can be promoted while it runs. A Priority is a fixed one;
// a *PriorityVar can change (as slog's Level and LevelVar).
type Prioritizer interface {
	Priority() Priority
}

// Priority returns p itself.
func (p Priority) Priority() Priority { return p }

// PriorityVar is a priority that may change while a scan runs: a
// background scan (a prefetch, a rescan after a rules update) that a
// client comes to wait on is raised to Interactive, and its remaining work
// goes ahead of other background work. Safe for concurrent use.
type PriorityVar struct{ p atomic.Int32 }

// NewPriorityVar returns a PriorityVar set to p.
func NewPriorityVar(p Priority) *PriorityVar {
	v := &PriorityVar{}
	v.Set(p)
	return v
}

// Set changes the priority.
func (v *PriorityVar) Set(p Priority) { v.p.Store(int32(p)) }

// Priority returns the current priority.
func (v *PriorityVar) Priority() Priority { return Priority(v.p.Load()) }

// Options configure New. Zero values take defaults.
type Options struct {
	Workers   int      // default runtime.NumCPU()
	Limits    Limits   // zero fields take defaults
	RulePaths []string // extra .yar files or folders (recursively *.yar, *.yara), compiled together with the embedded default rules
	// KnownBadFiles lists sha256 digests of files that always block. When
	// it is not empty every regular file of a layer is hashed (whole, up
	// to MaxFileBytes) and a listed one gives a KnownBadRule finding of
	// severity high. The list is part of the ruleset id.
	KnownBadFiles *KnownBad
}

// batchSize is the size of the buffers small files are packed into; files
// up to this size are read whole into a batch.
const batchSize = 1 << 20

// maxSlots caps the jobs one scan may have in flight, which caps its
// buffers at maxSlots × Window however many workers there are.
const maxSlots = 16

// Scanner scans layers and image configs with one compiled ruleset in a
// bounded pool of workers. It is safe for concurrent use.
type Scanner struct {
	rules    *yara.Rules
	metas    map[string]ruleMeta
	infos    []RuleInfo
	nrules   int
	knownBad *KnownBad // nil when no list, so workers skip hashing
	id       string
	warnings []string
	limits   Limits
	flags    yara.ScanFlags
	workers  int
	slots    int
	// batchSize is the size of batch buffers: files up to it are packed.
	batchSize int

	queue   *queue
	busy    atomic.Int64
	wg      sync.WaitGroup
	closing sync.Once

	batches *bufferPool
	windows *bufferPool

	// testHookJob, when set by a test, runs in the worker before each job.
	testHookJob func(*job)
}

// New compiles the embedded rules and opts.RulePaths and starts the worker
// pool. Compile errors name the rule file and line.
func New(opts Options) (*Scanner, error) {
	limits, err := opts.Limits.withDefaults()
	if err != nil {
		return nil, err
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	srcs, err := loadSources(opts.RulePaths)
	if err != nil {
		return nil, err
	}
	rules, warnings, err := compileRules(srcs)
	if err != nil {
		return nil, err
	}
	metas, nrules := ruleMetas(rules)
	var knownBad *KnownBad
	if opts.KnownBadFiles.Len() > 0 {
		knownBad = opts.KnownBadFiles
	}
	s := &Scanner{
		rules:    rules,
		metas:    metas,
		infos:    ruleInfos(rules, metas, srcs),
		nrules:   nrules,
		knownBad: knownBad,
		id:       rulesetID(srcs, limits, knownBad.Digests()),
		warnings: append(warnings, lintSources(srcs)...),
		limits:   limits,
		// The default rules use no string counts or match offsets beyond
		// the first, so YARA may stop looking for a string once found.
		flags:     yara.ScanFlagsFastMode,
		workers:   workers,
		slots:     min(workers+1, maxSlots),
		queue:     newQueue(),
		batchSize: int(min(batchSize, limits.Window)),
		batches:   newBufferPool(int(min(batchSize, limits.Window))),
		windows:   newBufferPool(int(limits.Window)),
	}
	ws := make([]*worker, workers)
	for i := range ws {
		if ws[i], err = newWorker(s); err != nil {
			for _, w := range ws[:i] {
				w.ys.Destroy()
			}
			rules.Destroy()
			return nil, err
		}
	}
	s.wg.Add(workers)
	for _, w := range ws {
		go func() {
			defer s.wg.Done()
			w.run()
		}()
	}
	return s, nil
}

// RulesetID identifies everything that decides a verdict: Version, the
// YARA library version, every rule source (name and bytes) and the
// limits. New rules or limits give a new id.
func (s *Scanner) RulesetID() string { return s.id }

// RuleCount is the number of public rules compiled.
func (s *Scanner) RuleCount() int { return s.nrules }

// Warnings are the compiler's warnings and pullgate's own lint of the
// rule sources (strings that may slow scanning down: no fixed run of 4
// bytes), each as "file:line: text".
func (s *Scanner) Warnings() []string { return append([]string(nil), s.warnings...) }

// Limits returns the limits in force, defaults filled in.
func (s *Scanner) Limits() Limits { return s.limits }

// Workers is the size of the worker pool.
func (s *Scanner) Workers() int { return s.workers }

// Busy is the number of workers scanning right now.
func (s *Scanner) Busy() int { return int(s.busy.Load()) }

// QueueDepth is the number of jobs waiting for a worker.
func (s *Scanner) QueueDepth() int { return s.queue.len() }

// Close stops accepting work, lets queued jobs finish, stops the workers
// and frees the compiled rules. Scans started after Close fail with
// ErrClosed.
func (s *Scanner) Close() error {
	s.closing.Do(func() {
		s.queue.close()
		s.wg.Wait()
		s.rules.Destroy()
	})
	return nil
}

// newScan starts the shared state of one scan, bounded by LayerTimeout.
func (s *Scanner) newScan(ctx context.Context, kind string, prio Prioritizer) (*scanState, context.CancelFunc, error) {
	if p := prio.Priority(); p != Interactive && p != Background {
		return nil, nil, fmt.Errorf("unknown scan priority %d", p)
	}
	ctx, cancel := context.WithTimeout(ctx, s.limits.LayerTimeout)
	deadline, _ := ctx.Deadline()
	return &scanState{
		ctx:      ctx,
		deadline: deadline,
		context:  kind,
		prio:     prio,
		slots:    make(chan struct{}, s.slots),
		seen:     make(map[Finding]struct{}),
	}, cancel, nil
}

// ctxErr turns the state of a finished or abandoned scan into the error
// to return: the caller's cancellation as is, our own timeout as a limit.
func (s *Scanner) ctxErr(parent context.Context, st *scanState) error {
	if err := parent.Err(); err != nil {
		return err
	}
	if st.ctx.Err() != nil {
		return limitError("scan took longer than LayerTimeout %s", s.limits.LayerTimeout)
	}
	return nil
}

// submit queues a job. On failure the job's slot and buffer are given back.
func (s *Scanner) submit(j *job) error {
	if err := s.queue.push(j); err != nil {
		if j.buf != nil {
			j.buf.put()
		}
		j.scan.release()
		return err
	}
	return nil
}
