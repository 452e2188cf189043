package storetest

import (
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/storage"
)

// LegacyOverride is an override as a release before Override.Image stored
// it (Raw, the JSON value under its subject) and what it must mean when
// read today (Want).
type LegacyOverride struct {
	Raw  string
	Want storage.Override
}

// LegacyOverrides are the five overrides of storage/testdata/overrides-v1.db,
// byte for byte as that release wrote them: an image allow, the allow made
// for one of its blobs (tied to it by the end of its reason), a digest
// deny, a repository allow and a repository deny.
func LegacyOverrides() []LegacyOverride {
	const image = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	mk := func(subject string, a storage.Action, reason, actor string, img digest.Digest) storage.Override {
		return storage.Override{Subject: subject, Action: a, Reason: reason, Actor: actor, Time: at, Image: img}
	}
	return []LegacyOverride{
		{`{"subject":"docker.io/evil/miner","action":"deny","reason":"campaign","actor":"bob","time":"2026-11-27T10:00:00Z"}`,
			mk("docker.io/evil/miner", storage.Deny, "campaign", "bob", "")},
		{`{"subject":"docker.io/library/alpine","action":"allow","reason":"official","actor":"token:ci","time":"2026-11-27T10:00:00Z"}`,
			mk("docker.io/library/alpine", storage.Allow, "official", "token:ci", "")},
		{`{"subject":"` + image + `","action":"allow","reason":"vendor image, reviewed","actor":"alice","time":"2026-11-27T10:00:00Z"}`,
			mk(image, storage.Allow, "vendor image, reviewed", "alice", "")},
		{`{"subject":"sha256:2222222222222222222222222222222222222222222222222222222222222222","action":"allow","reason":"vendor image, reviewed (blob of image ` + image + `)","actor":"alice","time":"2026-11-27T10:00:00Z"}`,
			mk("sha256:2222222222222222222222222222222222222222222222222222222222222222", storage.Allow, "vendor image, reviewed (blob of image "+image+")", "alice", image)},
		{`{"subject":"sha256:3333333333333333333333333333333333333333333333333333333333333333","action":"deny","reason":"known miner","actor":"bob","time":"2026-11-27T10:00:00Z"}`,
			mk("sha256:3333333333333333333333333333333333333333333333333333333333333333", storage.Deny, "known miner", "bob", "")},
	}
}

// CheckLegacyOverrides reads every override of LegacyOverrides from s, one
// by one and as the list, and fails unless each means what Want says.
func CheckLegacyOverrides(t *testing.T, s storage.Store) {
	t.Helper()
	legacy := LegacyOverrides()
	for _, l := range legacy {
		got, err := s.Override(ctx(t), l.Want.Subject)
		if err != nil || !equalOverride(got, l.Want) {
			t.Errorf("Override(%s) = %+v, %v; want %+v", l.Want.Subject, got, err, l.Want)
		}
	}
	list, err := s.Overrides(ctx(t))
	if err != nil {
		t.Fatalf("Overrides: %v", err)
	}
	if len(list) != len(legacy) {
		t.Fatalf("Overrides: %d, want %d: %+v", len(list), len(legacy), list)
	}
	for i, l := range legacy { // both sorted by subject
		if !equalOverride(list[i], l.Want) {
			t.Errorf("Overrides[%d] = %+v, want %+v", i, list[i], l.Want)
		}
	}
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
