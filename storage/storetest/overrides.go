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
