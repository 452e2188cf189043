package scanner

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hillu/go-yara/v4"
)

// Version is the scanner's own version; it is part of the ruleset id, so
// a change in how content is walked or scanned makes old verdicts stale.
const Version = "pullgate-scanner/19"

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

// A SizedPrioritizer is a Prioritizer that also says how large the blob
// it scans is, as stored (a compressed layer's compressed size; see
// WithSize). It sets when the scan is due: among queued jobs of one
// priority, workers take those of the scan due first. A scan without a
// size is due when it starts; one with a size, dueRate later for each
// byte. So a small layer's verdict does not wait behind that of a large
// layer pulled with it (the client of a small layer often waits for it
// before it asks for the next), and a large layer still goes first once
// it has waited as long as its size says (no scan waits for ever).
type SizedPrioritizer interface {
	Prioritizer
	Size() int64
}

// dueRate is the pace at which a scan's size makes it due later, about
// what one worker scans of a compressed layer.
const dueRate = 32 << 20 // bytes per second

// WithSize returns p with the size of the blob its scan reads.
func WithSize(p Prioritizer, size int64) SizedPrioritizer { return sized{p, size} }

type sized struct {
	Prioritizer
	size int64
}

func (s sized) Size() int64 { return s.size }

// dueAt is when a scan that starts at now with prio is due (see
// SizedPrioritizer).
func dueAt(now time.Time, prio Prioritizer) time.Time {
	if sp, ok := prio.(SizedPrioritizer); ok && sp.Size() > 0 {
		return now.Add(time.Duration(float64(sp.Size()) / dueRate * float64(time.Second)))
	}
	return now
}

// Options configure New. Zero values take defaults.
type Options struct {
	Workers   int      // default runtime.NumCPU()
	Limits    Limits   // zero fields take defaults
	RulePaths []string // extra .yar files or folders (recursively *.yar, *.yara), compiled together with the embedded default rules
	// KnownBadFiles lists sha256 digests of files that always block. When
	// it is not empty every regular file of a layer is hashed (whole, up
	// to MaxFileBytes) and a listed one gives a KnownBadRule finding of
	// severity high. The list is part of the ruleset id; the file it was
	// loaded from is among RulePaths, so a change to it is seen.
	KnownBadFiles *KnownBad
}

// batchSize is the size of the buffers small files are packed into; files
// up to this size are read whole into a batch.
const batchSize = 1 << 20

// maxSlots caps the jobs one scan may have in flight, which caps its
// buffers at maxSlots × Window however many workers there are.
const maxSlots = 16

// Scanner scans layers and image configs in a pool of exactly Workers
// goroutines, started by New and stopped by Close. Reload changes the
// rules in place: the pool is never rebuilt, so it stays bounded across
// any number of reloads. It is safe for concurrent use.
type Scanner struct {
	mu     sync.Mutex
	rs     *ruleset // current; the Scanner holds it until replaced or closed
	closed bool
	cur    atomic.Pointer[ruleset] // rs, for reads that take no hold

	limits  Limits
	flags   yara.ScanFlags
	workers int
	slots   int
	// batchSize is the size of batch buffers: files up to it are packed.
	batchSize int

	queue   *queue
	busy    atomic.Int64
	live    atomic.Int64 // worker goroutines running, for tests to watch
	wg      sync.WaitGroup
	closing sync.Once

	batches *bufferPool
	windows *bufferPool
	// bigDecoders holds a token for each walk that holds a decoder of
	// more than bigDecoder bytes (see takeBigDecoder).
	bigDecoders chan struct{}

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
	rs, err := compileRuleset(opts, limits)
	if err != nil {
		return nil, err
	}
	s := &Scanner{
		rs:     rs,
		limits: limits,
		// The default rules use no string counts or match offsets beyond
		// the first, so YARA may stop looking for a string once found.
		// See noTryCatch for the other flag.
		flags:     yara.ScanFlagsFastMode | noTryCatch,
		workers:   workers,
		slots:     min(workers+1, maxSlots),
		queue:     newQueue(),
		batchSize: int(min(batchSize, limits.Window)),
		batches:   newBufferPool(int(min(batchSize, limits.Window))),
		windows:   newBufferPool(int(limits.Window)),

		bigDecoders: make(chan struct{}, maxBigDecoders),
	}
	s.cur.Store(rs)
	ws := make([]*worker, workers)
	for i := range ws {
		ws[i] = &worker{s: s}
		if err = ws[i].use(rs); err != nil {
			for _, w := range ws[:i+1] {
				w.release()
			}
			rs.drop()
			return nil, err
		}
	}
	s.wg.Add(workers)
	s.live.Add(int64(workers))
	for _, w := range ws {
		go func() {
			defer s.wg.Done()
			defer s.live.Add(-1)
			w.run()
		}()
	}
	return s, nil
}

// Reload compiles the embedded rules and opts.RulePaths (with
// opts.KnownBadFiles) and makes them current, without stopping the pool.
// Scans already running finish under the rules they started with, and
// their Results say so; scans started after Reload returns use the new
// rules. Workers switch to the new rules between jobs, never inside one.
// The replaced rules are freed once no scan, job or worker uses them.
//
// Workers and limits are fixed for the Scanner's life: opts.Workers and
// opts.Limits must be zero or what New was given, else Reload refuses. A
// ruleset that does not compile is refused and the current one kept.
func (s *Scanner) Reload(opts Options) error {
	limits, err := opts.Limits.withDefaults()
	if err != nil {
		return err
	}
	if opts.Limits != (Limits{}) && limits != s.limits {
		return fmt.Errorf("reload rules: limits differ from those the scanner was started with; restart to change them")
	}
	if opts.Workers > 0 && opts.Workers != s.workers {
		return fmt.Errorf("reload rules: %d workers asked, the scanner runs %d; restart to change them", opts.Workers, s.workers)
	}
	rs, err := compileRuleset(opts, s.limits)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		rs.drop()
		return ErrClosed
	}
	old := s.rs
	s.rs = rs
	s.cur.Store(rs)
	s.mu.Unlock()
	old.drop()
	// Idle workers wake and let go of the old rules, so they are freed
	// without waiting for the next job.
	s.queue.wake()
	return nil
}

// current returns the current ruleset with a hold the caller must drop.
func (s *Scanner) current() (*ruleset, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.rs.hold()
	return s.rs, nil
}

// peek returns the current ruleset for reading its fixed fields. No hold
// is taken, so its compiled rules must not be used.
func (s *Scanner) peek() *ruleset { return s.cur.Load() }

// RulesetID identifies the current ruleset: everything that decides a
// verdict, Version, the YARA library version, every rule source and every
// file it includes (name and bytes), the known-bad list and the limits. New rules or limits give a
// new id. A scan running across a Reload finishes under the ruleset it
// started with: record the one its Result names, not this one.
func (s *Scanner) RulesetID() string { return s.peek().id }

// RulePaths are the files and folders the current ruleset was made of,
// besides the embedded rules: the configured rule paths, every file their
// rules include (wherever it lies), and the known-bad list's file. A change
// to any of them changes Fingerprint(RulePaths()), so a reloader polling
// it sees every change that can change the ruleset.
func (s *Scanner) RulePaths() []string { return append([]string(nil), s.peek().paths...) }

// KnownBad is the known-bad list of the current ruleset (nil when it has
// none), so that a check of whole blobs follows a reload as the scans do.
// The list is read-only; keep it no longer than one decision.
func (s *Scanner) KnownBad() *KnownBad { return s.peek().knownBad }

// RuleCount is the number of public rules compiled.
func (s *Scanner) RuleCount() int { return s.peek().nrules }

// Warnings are the compiler's warnings and pullgate's own lint of the
// rule sources (strings that may slow scanning down: no fixed run of 4
// bytes), each as "file:line: text".
func (s *Scanner) Warnings() []string { return append([]string(nil), s.peek().warnings...) }

// Limits returns the limits in force, defaults filled in.
func (s *Scanner) Limits() Limits { return s.limits }

// Workers is the size of the worker pool.
func (s *Scanner) Workers() int { return s.workers }

// Busy is the number of workers scanning right now.
func (s *Scanner) Busy() int { return int(s.busy.Load()) }

// QueueDepth is the number of jobs waiting for a worker.
func (s *Scanner) QueueDepth() int { return s.queue.len() }

// Close stops accepting work, lets queued jobs finish, stops the workers
// and frees the compiled rules once no scan uses them. Scans started after Close fail with
// ErrClosed.
func (s *Scanner) Close() error {
	s.closing.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.queue.close()
		s.wg.Wait()
		// Scans still running hold the rules until they return.
		s.rs.drop()
	})
	return nil
}

// newScan starts the shared state of one scan, bounded by LayerTimeout and
// pinned to the current ruleset until the returned func is called.
func (s *Scanner) newScan(ctx context.Context, kind string, prio Prioritizer) (*scanState, context.CancelFunc, error) {
	if p := prio.Priority(); p != Interactive && p != Background {
		return nil, nil, fmt.Errorf("unknown scan priority %d", p)
	}
	rs, err := s.current()
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.limits.LayerTimeout)
	deadline, _ := ctx.Deadline()
	st := &scanState{
		ctx:      ctx,
		deadline: deadline,
		due:      dueAt(time.Now(), prio),
		context:  kind,
		prio:     prio,
		rs:       rs,
		slots:    make(chan struct{}, s.slots),
		seen:     make(map[Finding]struct{}),
	}
	return st, func() {
		cancel()
		rs.drop()
	}, nil
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
// A queued job holds its scan's ruleset, so the rules outlive a scan that
// returns early (an error, a cancellation) while its jobs are still queued.
func (s *Scanner) submit(j *job) error {
	j.scan.rs.hold()
	if err := s.queue.push(j); err != nil {
		j.scan.rs.drop()
		if j.buf != nil {
			j.buf.put()
		}
		if j.file != nil {
			j.file.Close()
		}
		j.scan.release()
		return err
	}
	return nil
}
