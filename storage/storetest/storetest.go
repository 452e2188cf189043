// Package storetest is the conformance suite every storage.Store must pass,
// so the Redis and embedded stores cannot drift apart.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
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

func testKind(t *testing.T, s storage.Store) {
	if k := s.Kind(); k != "redis" && k != "embedded" {
		t.Fatalf("Kind() = %q, want \"redis\" or \"embedded\"", k)
	}
}

func testPing(t *testing.T, s storage.Store) {
	if err := s.Ping(ctx(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testVerdictRoundTrip(t *testing.T, s storage.Store) {
	for _, status := range []storage.Status{storage.StatusClean, storage.StatusBlocked, storage.StatusError} {
		want := SampleVerdict(Digest("roundtrip-"+string(status)), "rules-v1", status)
		mustPutVerdict(t, s, want)
		got, err := s.Verdict(ctx(t), want.Digest, want.RulesetID, storage.ContextLayer)
		if err != nil {
			t.Fatalf("Verdict(%s): %v", status, err)
		}
		if !equalVerdict(got, want) {
			t.Errorf("Verdict(%s) round trip:\n got %+v\nwant %+v", status, got, want)
		}
	}
}

func testVerdictNotFound(t *testing.T, s storage.Store) {
	d := Digest("absent")
	_, err := s.Verdict(ctx(t), d, "rules-v1", storage.ContextLayer)
	wantNotFound(t, "Verdict of an unknown digest", err)

	mustPutVerdict(t, s, SampleVerdict(d, "rules-v1", storage.StatusClean))
	_, err = s.Verdict(ctx(t), d, "rules-v2", storage.ContextLayer)
	wantNotFound(t, "Verdict under another ruleset", err)

	vs, err := s.Verdicts(ctx(t), Digest("absent-too"))
	if err != nil {
		t.Fatalf("Verdicts of an unknown digest: %v, want an empty list", err)
	}
	if len(vs) != 0 {
		t.Fatalf("Verdicts of an unknown digest = %v, want none", vs)
	}
}

func testVerdictOverwrite(t *testing.T, s storage.Store) {
	d := Digest("overwrite")
	mustPutVerdict(t, s, SampleVerdict(d, "rules-v1", storage.StatusClean))
	want := SampleVerdict(d, "rules-v1", storage.StatusBlocked)
	want.Time = want.Time.Add(time.Hour)
	mustPutVerdict(t, s, want)

	got, err := s.Verdict(ctx(t), d, "rules-v1", storage.ContextLayer)
	if err != nil {
		t.Fatalf("Verdict: %v", err)
	}
	if !equalVerdict(got, want) {
		t.Fatalf("after overwrite got %+v, want %+v", got, want)
	}
	vs, err := s.Verdicts(ctx(t), d)
	if err != nil {
		t.Fatalf("Verdicts: %v", err)
	}
	if len(vs) != 1 {
		t.Fatalf("Verdicts after overwrite: %d verdicts, want 1", len(vs))
	}
}

func testSeveralRulesets(t *testing.T, s storage.Store) {
	d, other := Digest("several"), Digest("several-other")
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	want := map[string]storage.Verdict{}
	for i, rs := range []string{"rules-a", "rules-b", "rules-c"} {
		v := SampleVerdict(d, rs, []storage.Status{storage.StatusClean, storage.StatusBlocked, storage.StatusError}[i])
		v.Time = base.Add(time.Duration(i) * time.Minute)
		want[rs] = v
		mustPutVerdict(t, s, v)
	}
	mustPutVerdict(t, s, SampleVerdict(other, "rules-z", storage.StatusClean))

	vs, err := s.Verdicts(ctx(t), d)
	if err != nil {
		t.Fatalf("Verdicts: %v", err)
	}
	if len(vs) != len(want) {
		t.Fatalf("Verdicts: got %d, want %d: %+v", len(vs), len(want), vs)
	}
	for i, v := range vs {
		if !equalVerdict(v, want[v.RulesetID]) {
			t.Errorf("Verdicts[%d] = %+v, want %+v", i, v, want[v.RulesetID])
		}
	}
	if vs[0].RulesetID != "rules-c" || vs[2].RulesetID != "rules-a" {
		t.Errorf("Verdicts order: %s, %s, %s; want newest first", vs[0].RulesetID, vs[1].RulesetID, vs[2].RulesetID)
	}
	for rs, w := range want {
		got, err := s.Verdict(ctx(t), d, rs, storage.ContextLayer)
		if err != nil || !equalVerdict(got, w) {
			t.Errorf("Verdict(%s) = %+v, %v; want %+v", rs, got, err, w)
		}
	}
}

func testVerdictInvalid(t *testing.T, s storage.Store) {
	good := SampleVerdict(Digest("invalid"), "rules-v1", storage.StatusClean)
	cases := []struct {
		name   string
		mutate func(*storage.Verdict)
	}{
		{"empty digest", func(v *storage.Verdict) { v.Digest = "" }},
		{"malformed digest", func(v *storage.Verdict) { v.Digest = "sha256:nothex" }},
		{"short digest", func(v *storage.Verdict) { v.Digest = "sha256:abc" }},
		{"empty ruleset", func(v *storage.Verdict) { v.RulesetID = "" }},
		{"unknown status", func(v *storage.Verdict) { v.Status = "maybe" }},
		{"empty status", func(v *storage.Verdict) { v.Status = "" }},
		{"empty context", func(v *storage.Verdict) { v.Context = "" }},
		{"unknown context", func(v *storage.Verdict) { v.Context = "tarball" }},
	}
	for _, tc := range cases {
		v := good
		tc.mutate(&v)
		wantInvalid(t, "PutVerdict with "+tc.name, s.PutVerdict(ctx(t), v))
	}
	_, err := s.Verdict(ctx(t), "sha256:nothex", "rules-v1", storage.ContextLayer)
	wantInvalid(t, "Verdict with a malformed digest", err)
	_, err = s.Verdict(ctx(t), good.Digest, "", storage.ContextLayer)
	wantInvalid(t, "Verdict with an empty ruleset", err)
	_, err = s.Verdict(ctx(t), good.Digest, "rules-v1", "")
	wantInvalid(t, "Verdict without a context", err)
	_, err = s.Verdicts(ctx(t), "nope")
	wantInvalid(t, "Verdicts with a malformed digest", err)

	_, err = s.Verdict(ctx(t), good.Digest, good.RulesetID, storage.ContextLayer)
	wantNotFound(t, "Verdict after refused puts", err)
}

func testOverrides(t *testing.T, s storage.Store) {
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	byDigest := storage.Override{Subject: string(Digest("override")), Action: storage.Deny, Reason: "matches a known miner", Actor: "alice", Time: at}
	byRepo := storage.Override{Subject: "docker.io/library/alpine", Action: storage.Allow, Reason: "false positive on busybox", Actor: "bob", Time: at.Add(time.Minute)}

	_, err := s.Override(ctx(t), byRepo.Subject)
	wantNotFound(t, "Override before any put", err)
	list, err := s.Overrides(ctx(t))
	if err != nil || len(list) != 0 {
		t.Fatalf("Overrides on an empty store = %v, %v; want none", list, err)
	}

	for _, o := range []storage.Override{byRepo, byDigest} {
		if err := s.PutOverride(ctx(t), o); err != nil {
			t.Fatalf("PutOverride(%s): %v", o.Subject, err)
		}
		got, err := s.Override(ctx(t), o.Subject)
		if err != nil || !equalOverride(got, o) {
			t.Fatalf("Override(%s) = %+v, %v; want %+v", o.Subject, got, err, o)
		}
	}

	list, err = s.Overrides(ctx(t))
	if err != nil {
		t.Fatalf("Overrides: %v", err)
	}
	if len(list) != 2 || !equalOverride(list[0], byRepo) || !equalOverride(list[1], byDigest) {
		t.Fatalf("Overrides = %+v, want [%+v %+v] (sorted by subject)", list, byRepo, byDigest)
	}

	flipped := byDigest
	flipped.Action, flipped.Reason, flipped.Actor = storage.Allow, "vendor confirmed", "carol"
	if err := s.PutOverride(ctx(t), flipped); err != nil {
		t.Fatalf("PutOverride overwrite: %v", err)
	}
	got, err := s.Override(ctx(t), flipped.Subject)
	if err != nil || !equalOverride(got, flipped) {
		t.Fatalf("Override after overwrite = %+v, %v; want %+v", got, err, flipped)
	}

	if err := s.DeleteOverride(ctx(t), byDigest.Subject); err != nil {
		t.Fatalf("DeleteOverride: %v", err)
	}
	_, err = s.Override(ctx(t), byDigest.Subject)
	wantNotFound(t, "Override after delete", err)
	wantNotFound(t, "DeleteOverride twice", s.DeleteOverride(ctx(t), byDigest.Subject))

	list, err = s.Overrides(ctx(t))
	if err != nil || len(list) != 1 || !equalOverride(list[0], byRepo) {
		t.Fatalf("Overrides after delete = %+v, %v; want [%+v]", list, err, byRepo)
	}
}

func testOverrideInvalid(t *testing.T, s storage.Store) {
	good := storage.Override{Subject: "docker.io/library/alpine", Action: storage.Deny, Reason: "r", Actor: "a", Time: time.Now()}
	cases := []struct {
		name   string
		mutate func(*storage.Override)
	}{
		{"empty subject", func(o *storage.Override) { o.Subject = "" }},
		{"malformed digest", func(o *storage.Override) { o.Subject = "sha256:zzzz" }},
		{"unqualified name", func(o *storage.Override) { o.Subject = "alpine" }},
		{"tagged name", func(o *storage.Override) { o.Subject = "docker.io/library/alpine:3.20" }},
		{"unknown action", func(o *storage.Override) { o.Action = "maybe" }},
		{"empty actor", func(o *storage.Override) { o.Actor = "" }},
	}
	for _, tc := range cases {
		o := good
		tc.mutate(&o)
		wantInvalid(t, "PutOverride with "+tc.name, s.PutOverride(ctx(t), o))
	}
	_, err := s.Override(ctx(t), "")
	wantInvalid(t, "Override with an empty subject", err)
	list, err := s.Overrides(ctx(t))
	if err != nil || len(list) != 0 {
		t.Fatalf("Overrides after refused puts = %+v, %v; want none", list, err)
	}
}

func testTags(t *testing.T, s storage.Store) {
	key := "docker.io/library/alpine:3.20"
	_, err := s.Tag(ctx(t), key)
	wantNotFound(t, "Tag before any put", err)

	first := storage.TagRecord{Digest: Digest("tag-1"), MediaType: "application/vnd.oci.image.index.v1+json", Size: 9218, Time: time.Date(2025, 2, 3, 4, 5, 6, 7, time.UTC)}
	second := storage.TagRecord{Digest: Digest("tag-2"), MediaType: "application/vnd.docker.distribution.manifest.list.v2+json", Size: 1024, Time: first.Time.Add(time.Hour)}
	for _, want := range []storage.TagRecord{first, second} {
		if err := s.PutTag(ctx(t), key, want); err != nil {
			t.Fatalf("PutTag: %v", err)
		}
		got, err := s.Tag(ctx(t), key)
		if err != nil || !equalTag(got, want) {
			t.Fatalf("Tag = %+v, %v; want %+v", got, err, want)
		}
	}
	_, err = s.Tag(ctx(t), "docker.io/library/alpine:3.19")
	wantNotFound(t, "Tag of another key", err)

	wantInvalid(t, "PutTag with an empty key", s.PutTag(ctx(t), "", first))
	wantInvalid(t, "PutTag with a malformed digest", s.PutTag(ctx(t), key, storage.TagRecord{Digest: "sha256:x"}))
	got, err := s.Tag(ctx(t), key)
	if err != nil || !equalTag(got, second) {
		t.Fatalf("Tag after refused put = %+v, %v; want %+v", got, err, second)
	}
}

// testConcurrentWriters runs writers on distinct rulesets of one digest,
// writers racing on one key, and readers that must only ever see a whole
// value; run it under -race.
func testConcurrentWriters(t *testing.T, s storage.Store) {
	const writers, perWriter = 8, 20
	d, hot := Digest("concurrent"), Digest("concurrent-hot")
	mustPutVerdict(t, s, SampleVerdict(hot, "rules-hot", storage.StatusClean))

	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter*3)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				v := SampleVerdict(d, fmt.Sprintf("rules-%d-%d", w, i), storage.StatusClean)
				if err := s.PutVerdict(ctx(t), v); err != nil {
					errs <- err
				}
				status := storage.StatusClean
				if (w+i)%2 == 1 {
					status = storage.StatusBlocked
				}
				if err := s.PutVerdict(ctx(t), SampleVerdict(hot, "rules-hot", status)); err != nil {
					errs <- err
				}
				if err := s.PutTag(ctx(t), "docker.io/library/busybox:latest", storage.TagRecord{Digest: Digest(fmt.Sprint(w, i)), Size: int64(i)}); err != nil {
					errs <- err
				}
			}
		}()
	}
	for range writers / 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWriter {
				got, err := s.Verdict(ctx(t), hot, "rules-hot", storage.ContextLayer)
				if err != nil {
					errs <- err
					continue
				}
				if want := SampleVerdict(hot, "rules-hot", got.Status); !equalVerdict(got, want) {
					errs <- fmt.Errorf("reader saw a mixed value: %+v", got)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	vs, err := s.Verdicts(ctx(t), d)
	if err != nil {
		t.Fatalf("Verdicts: %v", err)
	}
	if len(vs) != writers*perWriter {
		t.Fatalf("Verdicts after concurrent writes: %d, want %d", len(vs), writers*perWriter)
	}
}

// testCancelled checks that a cancelled context is an error and never
// passes for "not found".
func testCancelled(t *testing.T, s storage.Store) {
	d := Digest("cancelled")
	mustPutVerdict(t, s, SampleVerdict(d, "rules-v1", storage.StatusClean))
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	if _, err := s.Verdict(c, d, "rules-v1", storage.ContextLayer); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Verdict with a cancelled context: %v, want an error that is not ErrNotFound", err)
	}
	if err := s.PutVerdict(c, SampleVerdict(d, "rules-v2", storage.StatusClean)); err == nil {
		t.Fatal("PutVerdict with a cancelled context succeeded")
	}
	if _, err := s.Links(c, d); err == nil {
		t.Fatal("Links with a cancelled context succeeded")
	}
	if err := s.PutLink(c, "docker.io/library/alpine", d); err == nil {
		t.Fatal("PutLink with a cancelled context succeeded")
	}
}

// testClosed checks a closed store answers with errors, never with "not
// found" (which a caller could read as "no deny override").
func testClosed(t *testing.T, s storage.Store) {
	subject := "docker.io/library/nginx"
	if err := s.PutOverride(ctx(t), storage.Override{Subject: subject, Action: storage.Deny, Reason: "r", Actor: "a"}); err != nil {
		t.Fatalf("PutOverride: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Override(ctx(t), subject); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Override after Close: %v, want an error that is not ErrNotFound", err)
	}
	if _, err := s.Verdict(ctx(t), Digest("closed"), "rules-v1", storage.ContextLayer); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Verdict after Close: %v, want an error that is not ErrNotFound", err)
	}
	// Links decide which names' denies apply: an empty answer from a
	// closed store would let content past them.
	if _, err := s.Links(ctx(t), Digest("closed")); err == nil {
		t.Fatal("Links after Close succeeded")
	}
	if err := s.PutLink(ctx(t), "docker.io/library/nginx", Digest("closed")); err == nil {
		t.Fatal("PutLink after Close succeeded")
	}
	if err := s.Ping(ctx(t)); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
}

func testReopen(t *testing.T, s storage.Store, reopen func(t *testing.T, s storage.Store) storage.Store) {
	v := SampleVerdict(Digest("reopen"), "rules-v1", storage.StatusBlocked)
	o := storage.Override{Subject: string(v.Digest), Action: storage.Allow, Reason: "r", Actor: "a", Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Image: Digest("reopen-image")}
	tag := storage.TagRecord{Digest: v.Digest, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 7, Time: o.Time}
	mustPutVerdict(t, s, v)
	if err := s.PutOverride(ctx(t), o); err != nil {
		t.Fatalf("PutOverride: %v", err)
	}
	if err := s.PutTag(ctx(t), "docker.io/library/alpine:latest", tag); err != nil {
		t.Fatalf("PutTag: %v", err)
	}

	s = reopen(t, s)

	gotV, err := s.Verdict(ctx(t), v.Digest, v.RulesetID, storage.ContextLayer)
	if err != nil || !equalVerdict(gotV, v) {
		t.Errorf("Verdict after reopen = %+v, %v; want %+v", gotV, err, v)
	}
	gotO, err := s.Override(ctx(t), o.Subject)
	if err != nil || !equalOverride(gotO, o) {
		t.Errorf("Override after reopen = %+v, %v; want %+v", gotO, err, o)
	}
	gotT, err := s.Tag(ctx(t), "docker.io/library/alpine:latest")
	if err != nil || !equalTag(gotT, tag) {
		t.Errorf("Tag after reopen = %+v, %v; want %+v", gotT, err, tag)
	}
}
