package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The config picks the backend, the files under the data dir and the blob
// driver; the embedded store runs, and says it has no event bus.
func TestOpenStoresFromConfig(t *testing.T) {
	cfg := defaultConfig()
	cfg.DataDir = t.TempDir()
	st, err := openStores(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Verdicts.Kind() != "embedded" || st.Bus != nil || len(st.Without) == 0 {
		t.Errorf("embedded: kind %s, bus %v, without %q", st.Verdicts.Kind(), st.Bus, st.Without)
	}
	for _, f := range []string{"verdicts.db", "audit.jsonl", "blobs"} {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, f)); err != nil {
			t.Errorf("%s under the data dir: %v", f, err)
		}
	}

	cfg.Redis = "redis://127.0.0.1:1/0"
	cfg.Storage.Driver = "s3"
	cfg.Storage.S3 = S3Config{Bucket: "b", Region: "r", SecretKeyFile: filepath.Join(cfg.DataDir, "secret"), AccessKey: "k"}
	if err := os.WriteFile(cfg.Storage.S3.SecretKeyFile, []byte("s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sc, err := storesConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Backend != "redis" || sc.RedisURL != cfg.Redis || sc.Blobs.Driver != "s3aws" || sc.Blobs.Params["secretkey"] != "s3cr3t" {
		t.Errorf("redis and s3: %+v", sc)
	}
}
