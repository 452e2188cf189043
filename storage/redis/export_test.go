package redis

import (
	"encoding/json"
	"testing"

	"github.com/pullgate/pullgate/storage"
)

// PutLegacyVerdict stores v as a release without verdict contexts did:
// JSON without a context, under the digest and the ruleset id alone.
func PutLegacyVerdict(t *testing.T, s storage.Store, v storage.Verdict) {
	t.Helper()
	v.Context = ""
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.(*Store).client.HSet(t.Context(), redisVerdictsKey(v.Digest), v.RulesetID, raw).Err(); err != nil {
		t.Fatalf("put legacy verdict: %v", err)
	}
}
