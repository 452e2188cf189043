package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"
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
	Time      time.Time     `json:"time"`
	Kind      string        `json:"kind"`
	Client    string        `json:"client,omitempty"`
	UserAgent string        `json:"user_agent,omitempty"`
	Image     string        `json:"image,omitempty"`
	Digest    digest.Digest `json:"digest,omitempty"`
	Decision  string        `json:"decision,omitempty"`
	Findings  []Finding     `json:"findings,omitempty"`
	Reason    string        `json:"reason,omitempty"`
	Latency   time.Duration `json:"latency,omitempty"` // nanoseconds
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
// The JSON-lines file under the data dir is the single-node log; a Redis
// stream with bounded retention is the shared one. Both pass
// storetest.RunAudit.
type AuditLog interface {
	// Append adds r; a zero Time is set to now.
	Append(ctx context.Context, r AuditRecord) error
	// Query returns the records q selects, newest first.
	Query(ctx context.Context, q AuditQuery) ([]AuditRecord, error)
	Close() error
}

// FileAuditLog appends JSON lines to one file and reads them back from the
// end, so recent records are found without reading the whole log.
type FileAuditLog struct {
	mu   sync.Mutex
	f    *os.File
	path string
	size int64

	// When the file passes maxBytes it is renamed path.1 (path.1 becoming
	// path.2, and so on, keep generations in all) and a new one started;
	// queries read the generations newest first.
	maxBytes int64
	keep     int
}

// Audit log rotation defaults: 256 MiB a file, four old files kept.
const (
	DefaultAuditFileBytes = 256 << 20
	DefaultAuditFileKeep  = 4
)

// SetRotation changes when the file is rotated and how many old files
// are kept (maxBytes <= 0: never rotate).
func (l *FileAuditLog) SetRotation(maxBytes int64, keep int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.maxBytes, l.keep = maxBytes, max(keep, 1)
}

var _ AuditLog = (*FileAuditLog)(nil)

// OpenFileAuditLog opens (creating when needed) the log at path.
func OpenFileAuditLog(path string) (*FileAuditLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	// A write torn by a crash leaves a line without its newline: end it,
	// so the next record starts on a line of its own.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if r, err := os.Open(path); err == nil {
			_, rerr := r.ReadAt(last, st.Size()-1)
			r.Close()
			if rerr == nil && last[0] != '\n' {
				_, _ = f.Write([]byte{'\n'})
			}
		}
	}
	l := &FileAuditLog{f: f, path: path, maxBytes: DefaultAuditFileBytes, keep: DefaultAuditFileKeep}
	if st, err := f.Stat(); err == nil {
		l.size = st.Size()
	}
	return l, nil
}

// rotate renames the generations one step back and starts a new file.
// The caller holds l.mu.
func (l *FileAuditLog) rotate() error {
	if err := l.f.Close(); err != nil {
		return err
	}
	l.f = nil
	for i := l.keep - 1; i >= 1; i-- {
		if err := os.Rename(l.generation(i), l.generation(i+1)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	if err := os.Rename(l.path, l.generation(1)); err != nil {
		return err
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	l.f, l.size = f, 0
	return nil
}

// generation names the file i rotations old (0: the current one).
func (l *FileAuditLog) generation(i int) string {
	if i == 0 {
		return l.path
	}
	return fmt.Sprintf("%s.%d", l.path, i)
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

// Append writes r as one line and syncs it to disk.
func (l *FileAuditLog) Append(ctx context.Context, r AuditRecord) error {
	if err := stamp(&r); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("audit record: %w", err)
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return fmt.Errorf("append to audit log %s: closed", l.path)
	}
	if _, err := l.f.Write(line); err != nil {
		return fmt.Errorf("append to audit log %s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("sync audit log %s: %w", l.path, err)
	}
	l.size += int64(len(line))
	if l.maxBytes > 0 && l.size >= l.maxBytes {
		if err := l.rotate(); err != nil {
			return fmt.Errorf("rotate audit log %s: %w", l.path, err)
		}
	}
	return nil
}

// Query reads the files backwards in blocks, the current one first and
// then the rotated ones. A line that does not parse (a write torn by a
// crash) is skipped.
func (l *FileAuditLog) Query(ctx context.Context, q AuditQuery) ([]AuditRecord, error) {
	l.mu.Lock()
	closed, keep := l.f == nil, l.keep
	l.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("query audit log %s: closed", l.path)
	}
	out := []AuditRecord{}
	for i := 0; i <= keep && len(out) < q.limit(); i++ {
		var err error
		out, err = queryFile(ctx, l.generation(i), q, out)
		if errors.Is(err, os.ErrNotExist) && i > 0 {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// queryFile adds the records of one file that q selects to out, newest
// first, until q's limit.
func queryFile(ctx context.Context, name string, q AuditQuery, out []AuditRecord) ([]AuditRecord, error) {
	f, err := os.Open(name)
	if err != nil {
		return out, fmt.Errorf("query audit log %s: %w", name, err)
	}
	defer f.Close()
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return out, fmt.Errorf("query audit log %s: %w", name, err)
	}
	limit := q.limit()
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
	if json.Unmarshal(line, &r) != nil || !q.Match(r) {
		return out
	}
	return append(out, r)
}

// Close closes the file. Closing twice is harmless.
func (l *FileAuditLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// RedisAuditLog is the audit log as a Redis stream (pullgate:audit),
// trimmed to a maximum number of entries, shared by every replica.
type RedisAuditLog struct {
	client *redis.Client
	addr   string
	max    int64
}

var _ AuditLog = (*RedisAuditLog)(nil)

const redisAuditKey = redisPrefix + "audit"

// DefaultAuditRetention is how many entries the Redis stream keeps when
// AuditLog is given no bound.
const DefaultAuditRetention = 100000

// AuditLog returns the audit stream on this store's Redis, keeping at most
// maxEntries (DefaultAuditRetention when 0 or less). It shares the store's
// connections: closing the store closes it.
func (s *RedisStore) AuditLog(maxEntries int64) *RedisAuditLog {
	if maxEntries <= 0 {
		maxEntries = DefaultAuditRetention
	}
	return &RedisAuditLog{client: s.client, addr: s.addr, max: maxEntries}
}

// Append adds r to the stream and trims it to the retention bound.
func (l *RedisAuditLog) Append(ctx context.Context, r AuditRecord) error {
	if err := stamp(&r); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("audit record: %w", err)
	}
	err = l.client.XAdd(ctx, &redis.XAddArgs{Stream: redisAuditKey, MaxLen: l.max, Values: []any{"r", string(b)}}).Err()
	if err != nil {
		return fmt.Errorf("append to audit stream on redis %s: %w", l.addr, err)
	}
	return nil
}

// Query pages through the stream from the newest entry.
func (l *RedisAuditLog) Query(ctx context.Context, q AuditQuery) ([]AuditRecord, error) {
	limit := q.limit()
	out := []AuditRecord{}
	const page = 500
	end := "+"
	for len(out) < limit {
		msgs, err := l.client.XRevRangeN(ctx, redisAuditKey, end, "-", page).Result()
		if err != nil {
			return nil, fmt.Errorf("query audit stream on redis %s: %w", l.addr, err)
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
