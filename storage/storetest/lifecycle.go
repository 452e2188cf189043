package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pullgate/pullgate/storage"
)

// testConcurrentWriters runs writers on distinct rulesets of one digest,
// writers racing on one key, and readers that must only ever see a whole
// value; run it under -race.
func testConcurrentWriters(t *testing.T, s storage.Store) {
	const writers, perWriter = 8, 20
	d, hot := Digest("concurrent"), Digest("concurrent-hot")
	mustPutVerdict(t, s, SampleVerdict(hot, "rules-hot", storage.StatusClean))

	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter*3)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				v := SampleVerdict(d, fmt.Sprintf("rules-%d-%d", w, i), storage.StatusClean)
				if err := s.PutVerdict(ctx(t), v); err != nil {
					errs <- err
				}
				status := storage.StatusClean
				if (w+i)%2 == 1 {
					status = storage.StatusBlocked
				}
				if err := s.PutVerdict(ctx(t), SampleVerdict(hot, "rules-hot", status)); err != nil {
					errs <- err
				}
				if err := s.PutTag(ctx(t), "docker.io/library/busybox:latest", storage.TagRecord{Digest: Digest(fmt.Sprint(w, i)), Size: int64(i)}); err != nil {
					errs <- err
				}
			}
		}()
	}
	for range writers / 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWriter {
				got, err := s.Verdict(ctx(t), hot, "rules-hot", storage.ContextLayer)
				if err != nil {
					errs <- err
					continue
				}
				if want := SampleVerdict(hot, "rules-hot", got.Status); !equalVerdict(got, want) {
					errs <- fmt.Errorf("reader saw a mixed value: %+v", got)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	vs, err := s.Verdicts(ctx(t), d)
	if err != nil {
		t.Fatalf("Verdicts: %v", err)
	}
	if len(vs) != writers*perWriter {
		t.Fatalf("Verdicts after concurrent writes: %d, want %d", len(vs), writers*perWriter)
	}
}

// testCancelled checks that a cancelled context is an error and never
// passes for "not found".
func testCancelled(t *testing.T, s storage.Store) {
	d := Digest("cancelled")
	mustPutVerdict(t, s, SampleVerdict(d, "rules-v1", storage.StatusClean))
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	if _, err := s.Verdict(c, d, "rules-v1", storage.ContextLayer); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Verdict with a cancelled context: %v, want an error that is not ErrNotFound", err)
	}
	if err := s.PutVerdict(c, SampleVerdict(d, "rules-v2", storage.StatusClean)); err == nil {
		t.Fatal("PutVerdict with a cancelled context succeeded")
	}
	if _, err := s.Links(c, d); err == nil {
		t.Fatal("Links with a cancelled context succeeded")
	}
	if err := s.PutLink(c, "docker.io/library/alpine", d); err == nil {
		t.Fatal("PutLink with a cancelled context succeeded")
	}
}

// testClosed checks a closed store answers with errors, never with "not
// found" (which a caller could read as "no deny override").
func testClosed(t *testing.T, s storage.Store) {
	subject := "docker.io/library/nginx"
	if err := s.PutOverride(ctx(t), storage.Override{Subject: subject, Action: storage.Deny, Reason: "r", Actor: "a"}); err != nil {
		t.Fatalf("PutOverride: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Override(ctx(t), subject); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Override after Close: %v, want an error that is not ErrNotFound", err)
	}
	if _, err := s.Verdict(ctx(t), Digest("closed"), "rules-v1", storage.ContextLayer); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Verdict after Close: %v, want an error that is not ErrNotFound", err)
	}
	// Links decide which names' denies apply: an empty answer from a
	// closed store would let content past them.
	if _, err := s.Links(ctx(t), Digest("closed")); err == nil {
		t.Fatal("Links after Close succeeded")
	}
	if err := s.PutLink(ctx(t), "docker.io/library/nginx", Digest("closed")); err == nil {
		t.Fatal("PutLink after Close succeeded")
	}
	if err := s.Ping(ctx(t)); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
}

func testReopen(t *testing.T, s storage.Store, reopen func(t *testing.T, s storage.Store) storage.Store) {
	v := SampleVerdict(Digest("reopen"), "rules-v1", storage.StatusBlocked)
	o := storage.Override{Subject: string(v.Digest), Action: storage.Allow, Reason: "r", Actor: "a", Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Image: Digest("reopen-image")}
	tag := storage.TagRecord{Digest: v.Digest, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 7, Time: o.Time}
	mustPutVerdict(t, s, v)
	if err := s.PutOverride(ctx(t), o); err != nil {
		t.Fatalf("PutOverride: %v", err)
	}
	if err := s.PutTag(ctx(t), "docker.io/library/alpine:latest", tag); err != nil {
		t.Fatalf("PutTag: %v", err)
	}

	s = reopen(t, s)

	gotV, err := s.Verdict(ctx(t), v.Digest, v.RulesetID, storage.ContextLayer)
	if err != nil || !equalVerdict(gotV, v) {
		t.Errorf("Verdict after reopen = %+v, %v; want %+v", gotV, err, v)
	}
	gotO, err := s.Override(ctx(t), o.Subject)
	if err != nil || !equalOverride(gotO, o) {
		t.Errorf("Override after reopen = %+v, %v; want %+v", gotO, err, o)
	}
	gotT, err := s.Tag(ctx(t), "docker.io/library/alpine:latest")
	if err != nil || !equalTag(gotT, tag) {
		t.Errorf("Tag after reopen = %+v, %v; want %+v", gotT, err, tag)
	}
}
