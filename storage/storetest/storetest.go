package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/storage"
)

// Option adjusts what Run covers.
type Option func(*options)

type options struct {
	reopen func(t *testing.T, s storage.Store) storage.Store
	legacy func(t *testing.T, s storage.Store, v storage.Verdict)
}

// WithLegacyVerdicts enables the test of records written before verdicts
// had a context: put must store v exactly as that release did (under the
// digest and the ruleset id alone, without the context field).
func WithLegacyVerdicts(put func(t *testing.T, s storage.Store, v storage.Verdict)) Option {
	return func(o *options) { o.legacy = put }
}

// WithReopen enables the persistence tests: reopen must close s and return
// a new Store over the same data (the same file, the same Redis).
func WithReopen(reopen func(t *testing.T, s storage.Store) storage.Store) Option {
	return func(o *options) { o.reopen = reopen }
}

// Run runs the suite. open must return a new, empty store each call and
// arrange for it to be closed when t ends.
func Run(t *testing.T, open func(t *testing.T) storage.Store, opts ...Option) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"Kind", testKind},
		{"Ping", testPing},
		{"VerdictRoundTrip", testVerdictRoundTrip},
		{"VerdictNotFound", testVerdictNotFound},
		{"VerdictOverwrite", testVerdictOverwrite},
		{"SeveralRulesets", testSeveralRulesets},
		{"VerdictContexts", testVerdictContexts},
		{"Links", testLinks},
		{"LinksInvalid", testLinksInvalid},
		{"LinksBounded", testLinksBounded},
		{"VerdictInvalid", testVerdictInvalid},
		{"Overrides", testOverrides},
		{"OverrideInvalid", testOverrideInvalid},
		{"Tags", testTags},
		{"ConcurrentWriters", testConcurrentWriters},
		{"Cancelled", testCancelled},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
	if o.legacy != nil {
		t.Run("LegacyVerdictNotReused", func(t *testing.T) {
			t.Parallel()
			testLegacyVerdict(t, open(t), o.legacy)
		})
	}
	if o.reopen != nil {
		t.Run("Reopen", func(t *testing.T) {
			t.Parallel()
			testReopen(t, open(t), o.reopen)
		})
	}
}

// Digest returns a valid digest derived from s, for tests.
func Digest(s string) digest.Digest { return digest.FromString(s) }

// SampleVerdict returns a fully populated verdict, every field set, so a
// round trip that drops one fails.
func SampleVerdict(dgst digest.Digest, rulesetID string, status storage.Status) storage.Verdict {
	v := storage.Verdict{
		Digest:         dgst,
		RulesetID:      rulesetID,
		Context:        storage.ContextLayer,
		Status:         status,
		Bytes:          123456789,
		Files:          4242,
		Duration:       1500*time.Millisecond + 7,
		ScannerVersion: "pullgate-scanner/1.2.3 libyara/4.2.3",
		Time:           time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC),
	}
	switch status {
	case storage.StatusBlocked:
		v.Findings = []storage.Finding{
			{Rule: "MinerXMRig", Category: "cryptominer", Severity: "high", Description: "XMRig cryptominer", Path: "/usr/bin/kworker", Layer: dgst},
			{Rule: "StratumURL", Category: "cryptominer", Severity: "medium", Description: "stratum pool URL", Path: "/etc/miner.json", Layer: dgst},
		}
	case storage.StatusError:
		v.Reason = "decompressed size limit exceeded"
	}
	return v
}

func ctx(t *testing.T) context.Context { return t.Context() }

func equalVerdict(a, b storage.Verdict) bool {
	if !a.Time.Equal(b.Time) {
		return false
	}
	a.Time, b.Time = time.Time{}, time.Time{}
	if len(a.Findings) == 0 {
		a.Findings = nil
	}
	if len(b.Findings) == 0 {
		b.Findings = nil
	}
	return reflect.DeepEqual(a, b)
}

func equalOverride(a, b storage.Override) bool {
	if !a.Time.Equal(b.Time) {
		return false
	}
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b
}

func equalTag(a, b storage.TagRecord) bool {
	if !a.Time.Equal(b.Time) {
		return false
	}
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b
}

func mustPutVerdict(t *testing.T, s storage.Store, v storage.Verdict) {
	t.Helper()
	if err := s.PutVerdict(ctx(t), v); err != nil {
		t.Fatalf("PutVerdict(%s, %s): %v", v.Digest, v.RulesetID, err)
	}
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("%s: got error %v, want one wrapping storage.ErrNotFound", what, err)
	}
}

func wantInvalid(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("%s: got error %v, want one wrapping storage.ErrInvalid", what, err)
	}
}
