package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/redisserver"
	"github.com/pullgate/pullgate/internal/s3server"
	"github.com/pullgate/pullgate/internal/testregistry"
)

// Two replicas on different machines share Redis and an S3 bucket: what
// one fetched and scanned, the other serves, and nothing is fetched twice.
func TestReplicasShareAnS3Store(t *testing.T) {
	hub := testregistry.Start(t)
	img := testregistry.CleanImage("s3")
	hub.Push(t, "library/e2e-s3", "1", img)
	s3 := s3server.Shared(t)
	redis := redisserver.Start(t)
	cfg := filepath.Join(t.TempDir(), "pullgate.yaml")
	writeTestFile(t, cfg, fmt.Sprintf(`storage:
  driver: s3
  s3:
    bucket: %s
    region: us-east-1
    endpoint: %s
    access_key: %s
    secret_key: %s
    root_directory: /e2e-replicas-%d
    insecure: true
    path_style: true
`, s3server.Bucket, s3.Endpoint, s3server.AccessKey, s3server.SecretKey, time.Now().UnixNano()))
	opts := PullgateOptions{Upstreams: map[string]string{"docker.io": hub.URL()}, Redis: redis.URL(), Extra: []string{"--config", cfg}}
	a := StartPullgate(t, opts)
	b := StartPullgate(t, opts) // its own data dir: only Redis and the bucket are shared

	if err := httpPull(a.URL(), "library/e2e-s3", "1", "client-a"); err != nil {
		t.Fatalf("through replica A: %v", err)
	}
	d := SharedDockerd(t, DockerdOptions{Mirrors: []string{b.URL()}})
	if out, err := d.Pull(pullCtx(t), "e2e-s3:1"); err != nil {
		t.Fatalf("docker pull through replica B: %v\n%s", err, out)
	}
	assertFetchedOnce(t, hub, img)
}
