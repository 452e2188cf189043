package gate

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testsync"
)

// A reader waits for bytes not spooled yet, never reads past its limit,
// gets io.EOF when the ingest ended short of it; the file leaves the
// folder when the ingest ends and is closed with the last reader.
func TestSpoolReadersFollowTheWriter(t *testing.T) {
	dir := t.TempDir()
	sp, err := newSpool(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !sp.acquire() {
		t.Fatal("reader refused on a live spool")
	}
	ctx := context.Background()
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 10)
		n, err := sp.readAt(ctx, buf, 0, 8)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf[:n])
	}()
	if testsync.Until(50*time.Millisecond, func() bool { return len(got) > 0 }) {
		t.Fatal("a reader returned before anything was written")
	}
	_, _ = sp.Write([]byte("0123456789"))
	if s := <-got; s != "01234567" {
		t.Fatalf("read %q; want the bytes up to the limit", s)
	}
	if !sp.wholeWritten() {
		t.Fatal("all 10 bytes written, spool says otherwise")
	}

	short, err := newSpool(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	short.acquire()
	_, _ = short.Write([]byte("01234"))
	short.end()
	if _, err := short.readAt(ctx, make([]byte, 4), 5, 10); !errors.Is(err, io.EOF) {
		t.Fatalf("read past a spool that ended short: %v", err)
	}
	if short.wholeWritten() {
		t.Fatal("a short spool says it is whole")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("the ended spool's file is still in the folder: %d files", len(entries))
	}
	if n, err := short.readAt(ctx, make([]byte, 4), 1, 10); err != nil || n != 4 {
		t.Fatalf("a reader lost an ended spool: %d %v", n, err)
	}
	short.release()
	if _, err := short.f.Stat(); err == nil {
		t.Fatal("the last reader gone, the file is still open")
	}
	if short.acquire() {
		t.Fatal("a closed spool took a reader")
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := sp.readAt(cctx, make([]byte, 4), 10, 10); err != nil {
		t.Fatalf("a read at its limit: %v", err)
	}
	fresh, _ := newSpool(dir, 10)
	if _, err := fresh.readAt(cctx, make([]byte, 4), 0, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiting read whose client left: %v", err)
	}
}
