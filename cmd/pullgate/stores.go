package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/bolt"
	"github.com/pullgate/pullgate/storage/redis"
)

// openStores opens the storage the config names: Redis when configured,
// else the embedded store under the data dir; the audit log under the
// data dir (with Redis, its stream first); the blob store on the
// filesystem under the data dir, or on S3.
func openStores(ctx context.Context, cfg Config) (*storage.Stores, error) {
	sc, err := storesConfig(cfg)
	if err != nil {
		return nil, err
	}
	st, err := storage.Open(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return st, nil
}

// storesConfig turns the config into storage.Open's.
func storesConfig(cfg Config) (storage.Config, error) {
	sc := storage.Config{
		Backend:        bolt.Name,
		Path:           filepath.Join(cfg.DataDir, "verdicts.db"),
		AuditRetention: cfg.Admin.AuditRetention,
		AuditFile:      filepath.Join(cfg.DataDir, "audit.jsonl"),
		AuditFileBytes: cfg.Admin.AuditFileBytes,
		AuditFileKeep:  cfg.Admin.AuditFileKeep,
		Blobs: storage.BlobsConfig{Driver: "filesystem",
			Params: map[string]any{"rootdirectory": filepath.Join(cfg.DataDir, "blobs")}},
	}
	if cfg.Redis != "" {
		sc.Backend, sc.Path, sc.RedisURL = redis.Name, "", cfg.Redis
	}
	if cfg.Storage.Driver != "s3" {
		return sc, nil
	}
	c := cfg.Storage.S3
	secret := c.SecretKey
	if c.SecretKeyFile != "" {
		b, err := os.ReadFile(c.SecretKeyFile)
		if err != nil {
			return storage.Config{}, fmt.Errorf("storage.s3.secret_key_file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	blobs, err := storage.S3Config{
		Bucket: c.Bucket, Region: c.Region, Endpoint: c.Endpoint, AccessKey: c.AccessKey, SecretKey: secret,
		RootDirectory: c.RootDirectory, Insecure: c.Insecure, PathStyle: c.PathStyle,
	}.Blobs()
	if err != nil {
		return storage.Config{}, fmt.Errorf("blob store: %w", err)
	}
	sc.Blobs = blobs
	return sc, nil
}
