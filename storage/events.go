package storage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/pullgate/pullgate/internal/verdict"
)

// Kinds of audit record.
const (
	AuditPull        = "pull"        // a pull decision
	AuditOverride    = "override"    // an operator set or removed an override
	AuditRetroactive = "retroactive" // a stored blob was found bad under new rules
)

// AuditRecord is one entry of the audit log: who pulled what, when, and
// what pullgate decided; or who changed an override, and why.
type AuditRecord struct {
	Time      time.Time       `json:"time"`
	Kind      string          `json:"kind"`
	Client    string          `json:"client,omitempty"`
	UserAgent string          `json:"user_agent,omitempty"`
	Image     string          `json:"image,omitempty"`
	Digest    digest.Digest   `json:"digest,omitempty"`
	Decision  verdict.Outcome `json:"decision,omitempty"`
	Findings  []Finding       `json:"findings,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	Latency   time.Duration   `json:"latency,omitempty"` // nanoseconds
	// Override changes: who, on what, which action ("allow", "deny",
	// "remove").
	Actor   string `json:"actor,omitempty"`
	Subject string `json:"subject,omitempty"`
	Action  string `json:"action,omitempty"`
}

// AuditQuery selects audit records. Empty fields select everything.
type AuditQuery struct {
	// Digest matches the record's digest, its override subject, or the
	// layer of one of its findings.
	Digest digest.Digest
	// Image matches a fully qualified repository ("docker.io/library/x"),
	// whatever tag or digest the record's image carries; with a tag or
	// digest it matches exactly. Override records match on their subject.
	Image string
	// Kind selects one kind of record (AuditPull, AuditOverride, …).
	Kind string
	// Limit bounds the answer; 0 means DefaultAuditLimit.
	Limit int

	// skipOverrides leaves out override changes: they are read from
	// their own file or stream, where earlier ones were copied.
	skipOverrides bool
}

// DefaultAuditLimit is the number of records a query returns by default;
// MaxAuditLimit is the most it ever returns.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 10000
)

func (q AuditQuery) limit() int {
	switch {
	case q.Limit <= 0:
		return DefaultAuditLimit
	case q.Limit > MaxAuditLimit:
		return MaxAuditLimit
	}
	return q.Limit
}

// Match reports whether r is selected by q.
func (q AuditQuery) Match(r AuditRecord) bool {
	if q.Kind != "" && r.Kind != q.Kind {
		return false
	}
	if q.Digest != "" {
		ok := r.Digest == q.Digest || r.Subject == string(q.Digest)
		for _, f := range r.Findings {
			ok = ok || f.Layer == q.Digest
		}
		if !ok {
			return false
		}
	}
	if q.Image != "" {
		img := r.Image
		if r.Kind == AuditOverride {
			img = r.Subject
		}
		if img != q.Image && !strings.HasPrefix(img, q.Image+":") && !strings.HasPrefix(img, q.Image+"@") {
			return false
		}
	}
	return true
}

// AuditLog is the durable record of pull decisions and override changes.
// The JSON-lines files under the data dir are the single-node log; Redis
// streams are the shared one. Override changes are kept apart from pull
// records (a file and a stream of their own, never rotated or trimmed), so
// no volume of pulls can push an operator's decision out of the record;
// a query reads both. Records are bounded (AuditRecord.Bounded,
// MaxAuditRecordBytes) before they are written. Both pass
// storetest.RunAudit.
type AuditLog interface {
	// Append adds r; a zero Time is set to now.
	Append(ctx context.Context, r AuditRecord) error
	// Query returns the records q selects, newest first.
	Query(ctx context.Context, q AuditQuery) ([]AuditRecord, error)
	Close() error
}

// FileAuditLog appends JSON lines to files and reads them back from the
// end, so recent records are found without reading the whole log: pull
// records to path (rotated by size), override changes to a file of their
// own beside it (see OverridesPath), never rotated.
type FileAuditLog struct {
	mu        sync.Mutex
	pulls     auditFile
	overrides auditFile
}

// auditFile is one JSON-lines file and, when it rotates, its generations.
type auditFile struct {
	f    *os.File
	path string
	size int64

	// When the file passes maxBytes it is renamed path.1 (path.1 becoming
	// path.2, and so on, keep generations in all) and a new one started;
	// queries read the generations newest first. maxBytes <= 0: never.
	maxBytes int64
	keep     int
}

// Audit log rotation defaults: 256 MiB a file, four old files kept.
const (
	DefaultAuditFileBytes = 256 << 20
	DefaultAuditFileKeep  = 4
)

// SetRotation changes when the pull records' file is rotated and how many
// old files are kept (maxBytes <= 0: never rotate).
func (l *FileAuditLog) SetRotation(maxBytes int64, keep int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pulls.maxBytes, l.pulls.keep = maxBytes, max(keep, 1)
}

var _ AuditLog = (*FileAuditLog)(nil)

// OverridesPath names the file of override changes that goes with the
// audit log at path: audit.jsonl → audit-overrides.jsonl.
func OverridesPath(path string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-overrides" + ext
}

// OpenFileAuditLog opens (creating when needed) the log at path and the
// override changes beside it. A log written before override changes had
// a file of their own has them copied there the first time, so that they
// are found, and kept, however the pull records rotate.
func OpenFileAuditLog(path string) (*FileAuditLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	l := &FileAuditLog{
		pulls:     auditFile{path: path, maxBytes: DefaultAuditFileBytes, keep: DefaultAuditFileKeep},
		overrides: auditFile{path: OverridesPath(path), keep: 1},
	}
	if err := l.pulls.open(); err != nil {
		return nil, err
	}
	if err := l.separateOverrides(); err != nil {
		l.pulls.close()
		return nil, err
	}
	if err := l.overrides.open(); err != nil {
		l.pulls.close()
		return nil, err
	}
	return l, nil
}

// separateOverrides writes the override changes found in the pull records'
// files to the overrides file, when that file does not exist yet. It is
// written whole under a temporary name and then renamed, so a crash leaves
// either no file (and the copy is made again) or the whole of it.
func (l *FileAuditLog) separateOverrides() error {
	if _, err := os.Stat(l.overrides.path); err == nil || !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var found []AuditRecord
	ctx := context.Background()
	for i := 0; i <= max(l.pulls.keep, 16); i++ {
		recs, err := queryFile(ctx, l.pulls.generation(i), AuditQuery{Kind: AuditOverride}, nil, math.MaxInt)
		if errors.Is(err, os.ErrNotExist) && i > 0 {
			break
		}
		if err != nil {
			return fmt.Errorf("copy override changes out of %s: %w", l.pulls.path, err)
		}
		found = append(found, recs...)
	}
	tmp := l.overrides.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	w := bufio.NewWriter(f)
	for i := len(found) - 1; i >= 0; i-- { // oldest first
		line, err := encodeAudit(found[i])
		if err == nil {
			_, err = w.Write(line)
		}
		if err != nil {
			f.Close()
			os.Remove(tmp)
			return fmt.Errorf("write %s: %w", tmp, err)
		}
	}
	if err := errors.Join(w.Flush(), f.Sync(), f.Close()); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, l.overrides.path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

// open opens the file for appending, ending a line torn by a crash.
func (a *auditFile) open() error {
	f, err := os.OpenFile(a.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open audit log %s: %w", a.path, err)
	}
	// A write torn by a crash leaves a line without its newline: end it,
	// so the next record starts on a line of its own.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if r, err := os.Open(a.path); err == nil {
			_, rerr := r.ReadAt(last, st.Size()-1)
			r.Close()
			if rerr == nil && last[0] != '\n' {
				_, _ = f.Write([]byte{'\n'})
			}
		}
	}
	a.f = f
	if st, err := f.Stat(); err == nil {
		a.size = st.Size()
	}
	return nil
}

func (a *auditFile) close() error {
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

// rotate renames the generations one step back and starts a new file.
func (a *auditFile) rotate() error {
	if err := a.f.Close(); err != nil {
		return err
	}
	a.f = nil
	for i := a.keep - 1; i >= 1; i-- {
		if err := os.Rename(a.generation(i), a.generation(i+1)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	if err := os.Rename(a.path, a.generation(1)); err != nil {
		return err
	}
	f, err := os.OpenFile(a.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	a.f, a.size = f, 0
	return nil
}

// generation names the file i rotations old (0: the current one).
func (a *auditFile) generation(i int) string {
	if i == 0 {
		return a.path
	}
	return fmt.Sprintf("%s.%d", a.path, i)
}

// append writes line, syncs it and rotates when the file is full.
func (a *auditFile) append(line []byte) error {
	if a.f == nil {
		return fmt.Errorf("append to audit log %s: closed", a.path)
	}
	if _, err := a.f.Write(line); err != nil {
		return fmt.Errorf("append to audit log %s: %w", a.path, err)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("sync audit log %s: %w", a.path, err)
	}
	a.size += int64(len(line))
	if a.maxBytes > 0 && a.size >= a.maxBytes {
		if err := a.rotate(); err != nil {
			return fmt.Errorf("rotate audit log %s: %w", a.path, err)
		}
	}
	return nil
}

func stamp(r *AuditRecord) error {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	if r.Kind == "" {
		return fmt.Errorf("audit record: %w: empty kind", ErrInvalid)
	}
	return nil
}

// Append writes r, bounded, as one line of the file its kind goes to, and
// syncs it to disk.
func (l *FileAuditLog) Append(ctx context.Context, r AuditRecord) error {
	if err := stamp(&r); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	line, err := encodeAudit(r)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.Kind == AuditOverride {
		return l.overrides.append(line)
	}
	return l.pulls.append(line)
}

// Query reads the overrides file and the pull records' files (the current
// one first, then the rotated ones) backwards in blocks, and merges what
// they return. A line that does not parse (a write torn by a crash) is
// skipped.
func (l *FileAuditLog) Query(ctx context.Context, q AuditQuery) ([]AuditRecord, error) {
	l.mu.Lock()
	closed, keep := l.pulls.f == nil, l.pulls.keep
	l.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("query audit log %s: closed", l.pulls.path)
	}
	var overrides []AuditRecord
	if q.Kind == "" || q.Kind == AuditOverride {
		var err error
		if overrides, err = queryFile(ctx, l.overrides.path, q, nil, q.limit()); err != nil {
			return nil, err
		}
	}
	pulls := []AuditRecord{}
	if q.Kind != AuditOverride {
		// Override changes copied out of old pull files are read from
		// the overrides file only.
		pq := q
		pq.skipOverrides = true
		for i := 0; i <= keep && len(pulls) < q.limit(); i++ {
			var err error
			pulls, err = queryFile(ctx, l.pulls.generation(i), pq, pulls, q.limit())
			if errors.Is(err, os.ErrNotExist) && i > 0 {
				break
			}
			if err != nil {
				return nil, err
			}
		}
	}
	return mergeNewestFirst(pulls, overrides, q.limit()), nil
}

// mergeNewestFirst merges two lists that are each newest first.
func mergeNewestFirst(a, b []AuditRecord, limit int) []AuditRecord {
	out := make([]AuditRecord, 0, min(len(a)+len(b), limit))
	for len(out) < limit && (len(a) > 0 || len(b) > 0) {
		if len(b) == 0 || (len(a) > 0 && !b[0].Time.After(a[0].Time)) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return out
}

// queryFile adds the records of one file that q selects to out, newest
// first, until out holds limit.
func queryFile(ctx context.Context, name string, q AuditQuery, out []AuditRecord, limit int) ([]AuditRecord, error) {
	f, err := os.Open(name)
	if err != nil {
		return out, fmt.Errorf("query audit log %s: %w", name, err)
	}
	defer f.Close()
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return out, fmt.Errorf("query audit log %s: %w", name, err)
	}
	const block = 64 << 10
	var rest []byte // the start of a line whose beginning is further back
	for pos := end; pos > 0 && len(out) < limit; {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		n := int64(block)
		if pos < n {
			n = pos
		}
		pos -= n
		buf := make([]byte, n, int(n)+len(rest))
		if _, err := f.ReadAt(buf, pos); err != nil {
			return out, fmt.Errorf("query audit log %s: %w", name, err)
		}
		buf = append(buf, rest...)
		lines := bytes.Split(buf, []byte{'\n'})
		rest = lines[0]
		if pos == 0 {
			rest = nil
		} else {
			lines = lines[1:]
		}
		for i := len(lines) - 1; i >= 0 && len(out) < limit; i-- {
			out = appendMatch(out, lines[i], q)
		}
		if pos == 0 && len(rest) == 0 {
			break
		}
	}
	return out, nil
}

func appendMatch(out []AuditRecord, line []byte, q AuditQuery) []AuditRecord {
	if len(bytes.TrimSpace(line)) == 0 {
		return out
	}
	var r AuditRecord
	if json.Unmarshal(line, &r) != nil || !q.Match(r) || (q.skipOverrides && r.Kind == AuditOverride) {
		return out
	}
	return append(out, r)
}

// Close closes the files. Closing twice is harmless.
func (l *FileAuditLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.pulls.close(), l.overrides.close())
}

// RedisAuditLog is the audit log as two Redis streams shared by every
// replica: pull records in pullgate:audit, trimmed to a maximum number of
// entries (so at most that many times MaxAuditRecordBytes), and override
// changes in pullgate:audit:overrides, never trimmed.
type RedisAuditLog struct {
	client *redis.Client
	addr   string
	max    int64

	sepMu     sync.Mutex
	separated bool // this process saw the copy done
}

var _ AuditLog = (*RedisAuditLog)(nil)

const (
	redisAuditKey          = redisPrefix + "audit"
	redisAuditOverridesKey = redisPrefix + "audit:overrides"
	// redisAuditSeparatedKey marks that the override changes of the pull
	// stream (written before they had a stream of their own) were copied.
	redisAuditSeparatedKey = redisPrefix + "audit:overrides:separated"
)

// DefaultAuditRetention is how many entries the Redis stream keeps when
// AuditLog is given no bound.
const DefaultAuditRetention = 100000

// AuditLog returns the audit streams on this store's Redis, keeping at most
// maxEntries pull records (DefaultAuditRetention when 0 or less). It shares
// the store's connections: closing the store closes it.
func (s *RedisStore) AuditLog(maxEntries int64) *RedisAuditLog {
	if maxEntries <= 0 {
		maxEntries = DefaultAuditRetention
	}
	return &RedisAuditLog{client: s.client, addr: s.addr, max: maxEntries}
}

// separateOverrides copies, once per stream (the first replica to take
// the mark does it), the override changes a pull stream written by an
// earlier version holds into the overrides stream. A failure is retried
// by the next call.
func (l *RedisAuditLog) separateOverrides(ctx context.Context) error {
	l.sepMu.Lock()
	defer l.sepMu.Unlock()
	if l.separated {
		return nil
	}
	took, err := l.client.SetNX(ctx, redisAuditSeparatedKey, time.Now().UTC().Format(time.RFC3339), 0).Result()
	if err != nil {
		return fmt.Errorf("copy override changes to %s on redis %s: %w", redisAuditOverridesKey, l.addr, err)
	}
	if took {
		if err := l.copyOverrides(ctx); err != nil {
			// Let a later call (here or on another replica) try again.
			l.client.Del(context.WithoutCancel(ctx), redisAuditSeparatedKey)
			return fmt.Errorf("copy override changes to %s on redis %s: %w", redisAuditOverridesKey, l.addr, err)
		}
	}
	l.separated = true
	return nil
}

func (l *RedisAuditLog) copyOverrides(ctx context.Context) error {
	const page = 500
	start := "-"
	for {
		msgs, err := l.client.XRangeN(ctx, redisAuditKey, start, "+", page).Result()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			s, ok := m.Values["r"].(string)
			if !ok || !strings.Contains(s, `"kind":"override"`) {
				continue
			}
			if err := l.client.XAdd(ctx, &redis.XAddArgs{Stream: redisAuditOverridesKey, Values: []any{"r", s}}).Err(); err != nil {
				return err
			}
		}
		if len(msgs) < page {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// Append adds r, bounded, to the stream its kind goes to; pull records
// are trimmed to the retention bound.
func (l *RedisAuditLog) Append(ctx context.Context, r AuditRecord) error {
	if err := stamp(&r); err != nil {
		return err
	}
	line, err := encodeAudit(r)
	if err != nil {
		return err
	}
	// Before the first pull record trims the stream.
	if err := l.separateOverrides(ctx); err != nil {
		return err
	}
	args := &redis.XAddArgs{Stream: redisAuditKey, MaxLen: l.max, Values: []any{"r", string(line[:len(line)-1])}}
	if r.Kind == AuditOverride {
		args.Stream, args.MaxLen = redisAuditOverridesKey, 0
	}
	if err := l.client.XAdd(ctx, args).Err(); err != nil {
		return fmt.Errorf("append to audit stream %s on redis %s: %w", args.Stream, l.addr, err)
	}
	return nil
}

// Query pages through the streams from their newest entries and merges
// what they return.
func (l *RedisAuditLog) Query(ctx context.Context, q AuditQuery) ([]AuditRecord, error) {
	var overrides []AuditRecord
	if q.Kind == "" || q.Kind == AuditOverride {
		if err := l.separateOverrides(ctx); err != nil {
			return nil, err
		}
		var err error
		if overrides, err = l.query(ctx, redisAuditOverridesKey, q); err != nil {
			return nil, err
		}
		// Copied ones sit after newer changes made meanwhile.
		sort.SliceStable(overrides, func(i, j int) bool { return overrides[i].Time.After(overrides[j].Time) })
	}
	var pulls []AuditRecord
	if q.Kind != AuditOverride {
		pq := q
		pq.skipOverrides = true
		var err error
		if pulls, err = l.query(ctx, redisAuditKey, pq); err != nil {
			return nil, err
		}
	}
	return mergeNewestFirst(pulls, overrides, q.limit()), nil
}

func (l *RedisAuditLog) query(ctx context.Context, stream string, q AuditQuery) ([]AuditRecord, error) {
	limit := q.limit()
	out := []AuditRecord{}
	const page = 500
	end := "+"
	for len(out) < limit {
		msgs, err := l.client.XRevRangeN(ctx, stream, end, "-", page).Result()
		if err != nil {
			return nil, fmt.Errorf("query audit stream %s on redis %s: %w", stream, l.addr, err)
		}
		for _, m := range msgs {
			if s, ok := m.Values["r"].(string); ok && len(out) < limit {
				out = appendMatch(out, []byte(s), q)
			}
		}
		if len(msgs) < page {
			break
		}
		end = "(" + msgs[len(msgs)-1].ID
	}
	return out, nil
}

// Close does nothing: the connections belong to the RedisStore.
func (l *RedisAuditLog) Close() error { return nil }

// TeeAuditLog appends to every log and queries the first one, e.g. the
// shared Redis stream first and the local file as the durable copy.
type TeeAuditLog []AuditLog

var _ AuditLog = TeeAuditLog(nil)

// Append appends to every log, returning the errors of those that failed.
func (t TeeAuditLog) Append(ctx context.Context, r AuditRecord) error {
	if err := stamp(&r); err != nil {
		return err
	}
	var errs []error
	for _, l := range t {
		errs = append(errs, l.Append(ctx, r))
	}
	return errors.Join(errs...)
}

// Query asks the first log.
func (t TeeAuditLog) Query(ctx context.Context, q AuditQuery) ([]AuditRecord, error) {
	if len(t) == 0 {
		return []AuditRecord{}, nil
	}
	return t[0].Query(ctx, q)
}

// Close closes every log.
func (t TeeAuditLog) Close() error {
	var errs []error
	for _, l := range t {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}
