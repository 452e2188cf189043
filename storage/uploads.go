package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	distst "github.com/distribution/distribution/v3/registry/storage"

	"github.com/distribution/distribution/v3"
	"github.com/opencontainers/go-digest"
)

// Walk calls fn with the digest of every stored blob (manifests excluded),
// for background work such as rescanning under new rules. An error from fn
// stops the walk and is returned.
func (b *Blobs) Walk(ctx context.Context, fn func(digest.Digest) error) error {
	e, ok := b.blobs.(distribution.BlobEnumerator)
	if !ok {
		return errors.New("blob store cannot enumerate its blobs")
	}
	err := e.Enumerate(ctx, fn)
	if isPathNotFound(err) {
		return nil
	}
	return err
}

// WalkManifests calls fn with the digest of every stored manifest.
func (b *Blobs) WalkManifests(ctx context.Context, fn func(digest.Digest) error) error {
	e, ok := b.manifests.(distribution.BlobEnumerator)
	if !ok {
		return errors.New("manifest store cannot enumerate its manifests")
	}
	err := e.Enumerate(ctx, fn)
	if isPathNotFound(err) {
		return nil
	}
	return err
}

// PurgeUploads removes uploads started before olderThan that were never
// committed or cancelled: what a process killed mid-ingest leaves behind.
// They are never visible as blobs; this reclaims their space. With a store
// shared by replicas, olderThan must be before any live upload's start.
func (b *Blobs) PurgeUploads(ctx context.Context, olderThan time.Time) (int, error) {
	// distribution reports a store that never had an upload as an error
	// (as text), so look first.
	if _, err := b.driver.Stat(ctx, uploadsRoot); isPathNotFound(err) {
		return 0, nil
	}
	deleted, errs := distst.PurgeUploads(ctx, b.driver, olderThan, true)
	return len(deleted), errors.Join(errs...)
}

// ReapUploads removes abandoned uploads (see PurgeUploads) older than
// maxAge, right away and then every interval, until ctx ends. A process
// killed mid-ingest leaves its upload behind; reaping while running reclaims
// that space without waiting for a restart. maxAge must outlast any live
// upload: pullgate passes its ingest timeout, past which no ingest runs.
func (b *Blobs) ReapUploads(ctx context.Context, maxAge, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = 5 * time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := b.PurgeUploads(ctx, time.Now().Add(-maxAge))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("purge abandoned uploads", "err", err)
		case n > 0:
			log.Info("purged abandoned uploads", "uploads", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// BlobInfo describes one stored blob, for keeping the store within a size.
type BlobInfo struct {
	Digest digest.Digest
	Size   int64
	Stored time.Time // when its data was written
}

// Usage lists the stored blobs (manifests excluded) with their sizes and
// the time each was stored.
func (b *Blobs) Usage(ctx context.Context) ([]BlobInfo, error) {
	var out []BlobInfo
	err := b.Walk(ctx, func(d digest.Digest) error {
		fi, err := b.driver.Stat(ctx, blobDataPath(d))
		if isPathNotFound(err) {
			return nil // removed since the walk listed it
		}
		if err != nil {
			return fmt.Errorf("stat blob %s: %w", d, err)
		}
		out = append(out, BlobInfo{Digest: d, Size: fi.Size(), Stored: fi.ModTime()})
		return nil
	})
	return out, err
}
