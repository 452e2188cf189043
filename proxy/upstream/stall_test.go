package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// A blob body that sends 10 bytes and then nothing fails its read after
// the idle timeout, and its connection slot is free again once it is
// closed.
func TestStalledBlobBodyFailsAfterIdleTimeout(t *testing.T) {
	recovered := make(chan struct{})
	defer close(recovered)
	r := faultServerWith(t, Config{MaxConcurrent: 1, IdleTimeout: 200 * time.Millisecond}, func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "0123456789")
		w.(http.Flusher).Flush()
		select {
		case <-recovered:
		case <-req.Context().Done():
		case <-time.After(5 * time.Second): // so that a missing timeout fails rather than hangs
		}
	})
	rc, _, err := r.Blob(context.Background(), "library/alpine", digest.FromString("x"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b, err := io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, ErrIdle) || string(b) != "0123456789" {
		t.Fatalf("read %q, %v; want the 10 bytes, then ErrIdle", b, err)
	}
	if !strings.Contains(err.Error(), "blob") || time.Since(start) > 5*time.Second {
		t.Fatalf("error %q after %s", err, time.Since(start))
	}
	if l := r.Load(); l.InFlight != 0 {
		t.Fatalf("slot still held after the stalled body was closed: %+v", l)
	}
}

// Only time spent waiting inside Read counts: a consumer slower than the
// idle timeout between reads does not make a live upstream look stalled.
func TestSlowConsumerIsNotIdle(t *testing.T) {
	r := faultServerWith(t, Config{IdleTimeout: 100 * time.Millisecond}, func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Length", "3")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "abc")
	})
	rc, _, err := r.Blob(context.Background(), "library/alpine", digest.FromString("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	p := make([]byte, 1)
	var got []byte
	for {
		n, err := rc.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %q: %v", got, err)
		}
		time.Sleep(250 * time.Millisecond) // a busy consumer, not a wait for an event
	}
	if string(got) != "abc" {
		t.Fatalf("read %q", got)
	}
}

// A wait for a connection slot is bounded: when every slot stays taken it
// ends in ErrBusy, whatever the caller's context allows.
func TestSlotWaitIsBounded(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	r := faultServerWith(t, Config{MaxConcurrent: 1, SlotWait: 200 * time.Millisecond, IdleTimeout: -1}, func(w http.ResponseWriter, req *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-req.Context().Done():
		}
	})
	rc, _, err := r.Blob(context.Background(), "library/alpine", digest.FromString("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // a missing bound fails, not hangs
	defer cancel()
	_, _, err = r.Blob(ctx, "library/alpine", digest.FromString("y"))
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("waited %s for a slot", d)
	}
	if l := r.Load(); l.Waiting != 0 {
		t.Fatalf("still counted as waiting: %+v", l)
	}
}
