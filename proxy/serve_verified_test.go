package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/storage"
)

// changedAt is when the file at path last changed (its ctime).
func changedAt(t *testing.T, path string) time.Time {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return time.Unix(st.Ctim.Unix())
}

// verifiedFile reports whether the store holds the blob's file as verified.
func verifiedFile(t *testing.T, f *fixture, path string, d digest.Digest) bool {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	return f.blobs.Verified(d, file)
}

// A blob file that was verified is served by sendfile while it stays as it
// was; a file touched or replaced is verified again, and one whose bytes
// no longer match is refused and removed, whatever its times say.
func TestServedBlobVerifiedOnce(t *testing.T) {
	f, root := fsFixture(t)
	flipKeepTimes := func(t *testing.T, path string) {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		file, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := file.WriteAt([]byte{0xde, 0xad}, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
		file.Close()
		if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	replaceWith := func(p []byte) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			if err := os.WriteFile(path+".new", p, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}
	}
	type tamperCase struct {
		name   string
		tamper func(t *testing.T, path string, blob []byte)
		intact bool // the bytes still match: served whole after verifying again
	}
	cases := []tamperCase{
		{name: "touched", intact: true, tamper: func(t *testing.T, path string, _ []byte) {
			now := time.Now()
			if err := os.Chtimes(path, now, now); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "replaced by the same bytes", intact: true, tamper: func(t *testing.T, path string, blob []byte) { replaceWith(blob)(t, path) }},
		{name: "bytes flipped, times put back", tamper: func(t *testing.T, path string, _ []byte) { flipKeepTimes(t, path) }},
		{name: "replaced by other bytes", tamper: func(t *testing.T, path string, blob []byte) {
			other := bytes.Clone(blob)
			other[len(other)/2] ^= 0xff
			replaceWith(other)(t, path)
		}},
	}
	blobs := make([][]byte, len(cases))
	ds := make([]digest.Digest, len(cases))
	for i := range cases {
		blobs[i] = bigLayer(uint64(20+i), 1<<20)
		ds[i] = warmBlob(t, f, "library/verified", blobs[i])
	}
	// A verification counts only for a file whose last change is older
	// than the filesystem can be trusted to tell apart.
	testsync.WaitFor(t, 10*time.Second, "the blob files to be older than the verification margin", func() bool {
		return time.Since(changedAt(t, dataFile(root, ds[len(ds)-1]))) > 1200*time.Millisecond
	})
	for i, tc := range cases {
		path := "/v2/library/verified/blobs/" + ds[i].String()
		file := dataFile(root, ds[i])
		if status, _, got, err := download(t, f, path); status != http.StatusOK || err != nil || !bytes.Equal(got, blobs[i]) {
			t.Fatalf("%s: verifying download: %d, %d bytes, %v", tc.name, status, len(got), err)
		}
		// Remembered once the tail has gone out, which the client may
		// see first.
		testsync.WaitFor(t, 5*time.Second, tc.name+": the file remembered as verified", func() bool { return verifiedFile(t, f, file, ds[i]) })
		// Served by sendfile from here on: whole and in ranges.
		for _, rg := range [][2]int{{0, len(blobs[i])}, {100, 70000}, {len(blobs[i]) - 10, len(blobs[i])}} {
			hdr := []string{"Range", fmt.Sprintf("bytes=%d-%d", rg[0], rg[1]-1)}
			if status, _, got, err := download(t, f, path, hdr...); err != nil || status != http.StatusPartialContent || !bytes.Equal(got, blobs[i][rg[0]:rg[1]]) {
				t.Fatalf("%s: range %v of a verified file: %d, %d bytes, %v", tc.name, rg, status, len(got), err)
			}
		}

		tc.tamper(t, file, blobs[i])
		if verifiedFile(t, f, file, ds[i]) {
			t.Fatalf("%s: the changed file still counts as verified", tc.name)
		}
		status, length, got, err := download(t, f, path)
		if tc.intact {
			if status != http.StatusOK || err != nil || !bytes.Equal(got, blobs[i]) {
				t.Fatalf("%s: %d, %d bytes, %v", tc.name, status, len(got), err)
			}
			continue
		}
		if err == nil || int64(len(got)) >= length || digest.FromBytes(got) == ds[i] {
			t.Fatalf("%s: the changed blob was served whole: %d, %d of %d bytes, %v", tc.name, status, len(got), length, err)
		}
		if _, err := f.blobs.Stat(t.Context(), ds[i]); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s: the changed blob is still in the store: %v", tc.name, err)
		}
	}
}

// A blob streamed to its client from the spool is hashed from the store
// once committed, in the background: the first pull of it from the store
// (the first warm pull) is then sent by sendfile, as in hold mode, where
// the cold pull's own serve verified it.
func TestStreamedBlobVerifiedInStore(t *testing.T) {
	root := t.TempDir()
	blobs, err := storage.NewFilesystemBlobs(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	f := newStreamFixture(t, func(o *Options) { o.Blobs = blobs })
	f.blobs = blobs
	layer := noisyLayer(256 << 10)
	f.up.push(t, "library/big", "1", testregistry.Image{Layers: [][]byte{layer}})
	ld := digest.FromBytes(layer)

	if resp, body := f.do(t, "GET", "/v2/library/big/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest in stream mode: %d %s", resp.StatusCode, body)
	}
	got, err := f.startGet(t, "/v2/library/big/blobs/"+ld.String()).wait(t)
	if err != nil || digest.FromBytes(got) != ld {
		t.Fatalf("streamed layer: %d bytes, err %v", len(got), err)
	}
	testsync.WaitFor(t, waitLong, "the stored layer verified without a serve from the store", func() bool {
		_, statErr := os.Stat(dataFile(root, ld))
		return statErr == nil && verifiedFile(t, f.fixture, dataFile(root, ld), ld)
	})
}
