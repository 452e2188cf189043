package storage

import (
	"encoding/json"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// SetBoltOpenTimeout shortens the lock wait for the duration of a test.
func SetBoltOpenTimeout(t *testing.T, d time.Duration) {
	old := boltOpenTimeout
	boltOpenTimeout = d
	t.Cleanup(func() { boltOpenTimeout = old })
}

// PutLegacyVerdict stores v as a release without verdict contexts did:
// JSON without a context, under the digest and the ruleset id alone.
func PutLegacyVerdict(t *testing.T, s Store, v Verdict) {
	t.Helper()
	v.Context = ""
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	switch s := s.(type) {
	case *BoltStore:
		err = s.db.Update(func(tx *bbolt.Tx) error {
			b, err := tx.Bucket(bucketVerdicts).CreateBucketIfNotExists([]byte(v.Digest))
			if err != nil {
				return err
			}
			return b.Put([]byte(v.RulesetID), raw)
		})
	case *RedisStore:
		err = s.client.HSet(t.Context(), redisVerdictsKey(v.Digest), v.RulesetID, raw).Err()
	default:
		t.Fatalf("no legacy writer for %T", s)
	}
	if err != nil {
		t.Fatalf("put legacy verdict: %v", err)
	}
}
