package storage

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

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
		line, err := EncodeAudit(found[i])
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

// Append writes r, bounded, as one line of the file its kind goes to, and
// syncs it to disk.
func (l *FileAuditLog) Append(ctx context.Context, r AuditRecord) error {
	if err := StampAudit(&r); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	line, err := EncodeAudit(r)
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
		if overrides, err = queryFile(ctx, l.overrides.path, q, nil, q.Max()); err != nil {
			return nil, err
		}
	}
	pulls := []AuditRecord{}
	if q.Kind != AuditOverride {
		// Override changes copied out of old pull files are read from
		// the overrides file only.
		pq := q.PullsOnly()
		for i := 0; i <= keep && len(pulls) < q.Max(); i++ {
			var err error
			pulls, err = queryFile(ctx, l.pulls.generation(i), pq, pulls, q.Max())
			if errors.Is(err, os.ErrNotExist) && i > 0 {
				break
			}
			if err != nil {
				return nil, err
			}
		}
	}
	return MergeNewestFirst(pulls, overrides, q.Max()), nil
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
			out = q.AppendMatch(out, lines[i])
		}
		if pos == 0 && len(rest) == 0 {
			break
		}
	}
	return out, nil
}

// Close closes the files. Closing twice is harmless.
func (l *FileAuditLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.pulls.close(), l.overrides.close())
}
