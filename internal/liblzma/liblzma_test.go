package liblzma

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"testing"
)

const memlimit = 72 << 20

func xz(t *testing.T, in []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("xz", args...)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil && len(out) == 0 {
		t.Logf("xz %v: %v", args, err)
	}
	return out
}

// payload is text followed by bytes that do not compress, so a stream of
// it is long and its damage can be put after the text.
func payload() []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := bytes.Repeat([]byte("the text the host writes out first\n"), 300)
	for range 200 << 10 {
		b = append(b, byte(rng.Uint32()))
	}
	return b
}

// readAll reads r step bytes at a time, and returns what it gave and the
// error it ended with.
func readAll(r io.Reader, step int) ([]byte, error) {
	var out []byte
	buf := make([]byte, step)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
}

func TestReadsWhatXzWrites(t *testing.T) {
	data := payload()
	stream := xz(t, data, "--format=lzma", "-c")
	for _, step := range []int{1, 100, 64 << 10} {
		br := bufio.NewReader(io.MultiReader(bytes.NewReader(stream), bytes.NewReader([]byte("after"))))
		r, err := NewReader(br, memlimit)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(r, step)
		r.Close()
		if err != io.EOF || !bytes.Equal(got, data) {
			t.Fatalf("read %d of %d bytes, %d at a time, ending with %v", len(got), len(data), step, err)
		}
		if rest, _ := io.ReadAll(br); string(rest) != "after" {
			t.Fatalf("the source holds %q after the stream, want what follows it", rest)
		}
	}
}

// A stream cut or damaged after its first bytes gives what xz writes out
// of it before it complains, byte for byte, then an error.
func TestDamagedStreamGivesWhatXzWrites(t *testing.T) {
	data := payload()
	stream := xz(t, data, "--format=lzma", "-c")
	damaged := map[string][]byte{}
	for _, cut := range []int{13, 200, len(stream) / 2, len(stream) - 1} {
		damaged["cut at "+strconv.Itoa(cut)] = stream[:cut]
	}
	for _, from := range []int{100, 5000, 50000} {
		b := bytes.Clone(stream)
		b[len(b)-from] ^= 0x55
		damaged["byte "+strconv.Itoa(from)+" from the end"] = b
	}
	for name, b := range damaged {
		want := xz(t, b, "--format=lzma", "-dc")
		if len(want) < 1000 && len(b) > 5000 {
			t.Fatalf("%s: xz wrote %d bytes: the case tests too little", name, len(want))
		}
		r, err := NewReader(bufio.NewReader(bytes.NewReader(b)), memlimit)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(r, 32<<10)
		r.Close()
		if !bytes.Equal(got, want) {
			t.Errorf("%s: read %d bytes, xz writes %d", name, len(got), len(want))
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: ended with %v, want ErrCorrupt", name, err)
		}
	}
}

func TestMemLimit(t *testing.T) {
	stream := bytes.Clone(xz(t, []byte("small"), "--format=lzma", "-c"))
	binary.LittleEndian.PutUint32(stream[1:5], 1<<30)
	r, err := NewReader(bufio.NewReader(bytes.NewReader(stream)), memlimit)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := io.ReadAll(r); !errors.Is(err, ErrMemLimit) {
		t.Fatalf("a header asking for a 1 GiB dictionary: %v, want ErrMemLimit", err)
	}
}

func TestNotAHeader(t *testing.T) {
	r, err := NewReader(bufio.NewReader(bytes.NewReader([]byte("#!/bin/sh\necho not lzma at all\n"))), memlimit)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	r.Close()
	if _, err := r.Read(make([]byte, 10)); err == nil {
		t.Fatal("a read after Close gave no error")
	}
	r, _ = NewReader(bufio.NewReader(bytes.NewReader([]byte{0xff, 0xff, 0xff})), memlimit)
	defer r.Close()
	if _, err := io.ReadAll(r); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("three bytes: %v, want ErrCorrupt", err)
	}
}
