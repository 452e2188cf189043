package scanner

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	mobycompression "github.com/moby/go-archive/compression"

	"github.com/pullgate/pullgate/internal/samples"
)

// FuzzScanLayer feeds the layer walker arbitrary blobs. It must end with a
// verdict, ErrCorrupt or ErrLimit, never a crash or a hang; and when it
// gives a verdict, every entry a client reads from the blob (moby's
// DecompressStream, then archive/tar) that carries a body or is a hard
// link was scanned under its path. Seeds: testdata/fuzz/FuzzScanLayer
// and the layers below.
func FuzzScanLayer(f *testing.F) {
	xmrig := samples.XMRig()
	plain := tarLayer(f, reg("etc/a", 0o644, "hello"), tfile{name: "usr/bin/kworker", mode: 0o755, data: xmrig},
		tfile{name: "bin/k2", typeflag: tar.TypeLink, link: "usr/bin/kworker"})
	packed, err := os.ReadFile("upx/testdata/tiny-amd64-nrv2e.upx")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{
		nil,
		plain,
		tarLayer(f, tfile{name: "usr/bin/tiny", mode: 0o755, data: packed}),
		gzipBytes(f, plain),
		zstdBytes(f, plain),
		append(zstdSkippable([]byte("x")), zstdBytes(f, plain)...),
		cli(f, plain, "bzip2", "-c"),
		cli(f, plain, "xz", "-c", "-1"),
		v7Tar("usr/bin/kw\xf6rker", 0o755, xmrig),
		tarLayer(f, tfile{name: ".wh..wh.plnk/.wh.x", mode: 0o755, data: xmrig}, tfile{name: "usr/bin/x", typeflag: tar.TypeLink, link: ".wh..wh.plnk/.wh.x"}),
	} {
		f.Add(seed)
	}
	s := newTestScanner(f, Options{Workers: 2, Limits: Limits{MaxLayerBytes: 16 << 20, MaxFiles: 10000, LayerTimeout: 30 * time.Second}})
	f.Fuzz(func(t *testing.T, blob []byte) {
		rec := recordScans(s)
		_, err := s.ScanLayer(context.Background(), bytes.NewReader(blob), Interactive)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrLimit) {
				t.Fatalf("err = %v, want a verdict, ErrCorrupt or ErrLimit", err)
			}
			return
		}
		// Every entry moby reads, up to an error that makes it refuse the
		// layer (it may have written them by then), was scanned. The
		// scanner may accept what moby refuses (the xz decoder takes a
		// stream cut after its header for an empty one; xz does not).
		rc, err := mobycompression.DecompressStream(bytes.NewReader(blob))
		if err != nil {
			return
		}
		defer rc.Close()
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if err != nil {
				return
			}
			switch hdr.Typeflag {
			case tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo, tar.TypeXGlobalHeader:
				continue
			}
			if _, ok := rec.get(cleanPath(hdr.Name)); !ok {
				t.Fatalf("entry %q (type %q) was not scanned", hdr.Name, hdr.Typeflag)
			}
		}
	})
}

// FuzzLinkStore checks the ring that keeps file content for hard links:
// whatever sizes are written, content that is reported kept reads back
// as written.
func FuzzLinkStore(f *testing.F) {
	f.Add([]byte{10, 200, 3, 0, 255, 17}, uint16(64))
	f.Add([]byte{64, 64, 64}, uint16(64))
	f.Fuzz(func(t *testing.T, sizes []byte, max uint16) {
		if max == 0 {
			return
		}
		st := newLinkStore(int64(max))
		type kept struct {
			e    *linkEntry
			data []byte
		}
		var all []kept
		for i, n := range sizes {
			data := bytes.Repeat([]byte{byte(i)}, int(n))
			w, start, ok := st.keep(int64(n))
			e := &linkEntry{start: start, size: int64(n), kept: ok}
			if ok {
				w.Write(data)
			}
			all = append(all, kept{e, data})
		}
		for i, k := range all {
			r, ok := st.content(k.e)
			if !ok {
				continue
			}
			got, _ := io.ReadAll(r)
			if !bytes.Equal(got, k.data) {
				t.Fatalf("entry %d of %d bytes read back as %v", i, len(k.data), got)
			}
		}
		held := 0
		for _, c := range st.ring {
			held += len(c)
		}
		if held > int(max) {
			t.Fatalf("ring grew to %d bytes, over %d", held, max)
		}
	})
}

// FuzzXzGuard feeds the xz container follower arbitrary bytes in reads of
// arbitrary sizes: it must pass every byte through unchanged or stop with
// an error, never crash. Seeds: xz streams of every shape TestXzGuard
// uses, and testdata/fuzz/FuzzXzGuard.
func FuzzXzGuard(f *testing.F) {
	layer := tarLayer(f, reg("a", 0o644, "hello"))
	f.Add(cli(f, layer, "xz", "-c", "-1"), uint8(7))
	f.Add(cli(f, layer, "xz", "-c", "-1", "--check=none"), uint8(1))
	f.Add(append(cli(f, layer, "xz", "-c", "-1", "--check=sha256"), 0, 0, 0, 0), uint8(100))
	f.Fuzz(func(t *testing.T, blob []byte, step uint8) {
		g := newXzGuard(bytes.NewReader(blob))
		var out []byte
		buf := make([]byte, int(step)+1)
		for {
			n, err := g.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				break
			}
		}
		if !bytes.HasPrefix(blob, out) {
			t.Fatalf("the guard changed the bytes it passed")
		}
	})
}
