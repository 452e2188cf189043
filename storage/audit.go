package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

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
	// their own file or stream, where earlier ones were copied (see
	// PullsOnly).
	skipOverrides bool
}

// DefaultAuditRetention is how many pull records a shared (Redis) audit
// log keeps when it is given no bound.
const DefaultAuditRetention = 100000

// DefaultAuditLimit is the number of records a query returns by default;
// MaxAuditLimit is the most it ever returns.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 10000
)

// Max is the most records q returns: Limit, or DefaultAuditLimit when 0,
// and never more than MaxAuditLimit.
func (q AuditQuery) Max() int {
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

// StampAudit sets a zero Time to now and refuses a record without a kind,
// before a log appends it.
func StampAudit(r *AuditRecord) error {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	if r.Kind == "" {
		return fmt.Errorf("audit record: %w: empty kind", ErrInvalid)
	}
	return nil
}

// MergeNewestFirst merges two lists that are each newest first, up to
// limit records.
func MergeNewestFirst(a, b []AuditRecord, limit int) []AuditRecord {
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

// PullsOnly returns q for reading a log's pull records: override changes
// found there (copied out to their own file or stream by an earlier
// release) are left out, since they are read from where they were copied.
func (q AuditQuery) PullsOnly() AuditQuery {
	q.skipOverrides = true
	return q
}

// AppendMatch decodes one JSON line of a log and appends it to out when q
// selects it. A line that does not parse (a write torn by a crash) is
// skipped.
func (q AuditQuery) AppendMatch(out []AuditRecord, line []byte) []AuditRecord {
	if len(bytes.TrimSpace(line)) == 0 {
		return out
	}
	var r AuditRecord
	if json.Unmarshal(line, &r) != nil || !q.Match(r) || (q.skipOverrides && r.Kind == AuditOverride) {
		return out
	}
	return append(out, r)
}

// TeeAuditLog appends to every log and queries the first one, e.g. the
// shared Redis stream first and the local file as the durable copy.
type TeeAuditLog []AuditLog

var _ AuditLog = TeeAuditLog(nil)

// Append appends to every log, returning the errors of those that failed.
func (t TeeAuditLog) Append(ctx context.Context, r AuditRecord) error {
	if err := StampAudit(&r); err != nil {
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
