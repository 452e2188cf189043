package storetest

import (
	"testing"
	"time"

	"github.com/pullgate/pullgate/storage"
)

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
