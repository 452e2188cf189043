package bolt

import (
	"encoding/json"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/pullgate/pullgate/storage"
)

// SetOpenTimeout shortens the lock wait for the duration of a test.
func SetOpenTimeout(t *testing.T, d time.Duration) {
	old := openTimeout
	openTimeout = d
	t.Cleanup(func() { openTimeout = old })
}

// PutLegacyVerdict stores v as a release without verdict contexts did:
// JSON without a context, under the digest and the ruleset id alone.
func PutLegacyVerdict(t *testing.T, s storage.Store, v storage.Verdict) {
	t.Helper()
	v.Context = ""
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	err = s.(*Store).db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.Bucket(bucketVerdicts).CreateBucketIfNotExists([]byte(v.Digest))
		if err != nil {
			return err
		}
		return b.Put([]byte(v.RulesetID), raw)
	})
	if err != nil {
		t.Fatalf("put legacy verdict: %v", err)
	}
}
