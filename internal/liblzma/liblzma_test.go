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

// An .xz stream is read to its end and no further: what follows it, a
// second stream among them, stays in the source.
func TestXzOneStream(t *testing.T) {
	data := payload()
	stream := xz(t, data, "-c")
	second := xz(t, []byte("second"), "-c")
	for _, step := range []int{1, 100, 64 << 10} {
		br := bufio.NewReader(io.MultiReader(bytes.NewReader(stream), bytes.NewReader(second)))
		r, err := NewXzReader(br, memlimit)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(r, step)
		r.Close()
		if err != io.EOF || !bytes.Equal(got, data) {
			t.Fatalf("read %d of %d bytes, %d at a time, ending with %v", len(got), len(data), step, err)
		}
		if rest, _ := io.ReadAll(br); !bytes.Equal(rest, second) {
			t.Fatalf("the source holds %d bytes after the stream, want the second stream's %d", len(rest), len(second))
		}
	}
}

// A stream whose header asks more dictionary than the cap decodes as xz
// decodes it while it reaches back no farther than the cap, and fails
// with ErrDictCap where it reaches farther; its header's other fields
// (properties, a known size, an end marker) are read as liblzma's .lzma
// decoder reads them.
func TestCappedReader(t *testing.T) {
	data := payload()
	rng := rand.New(rand.NewPCG(3, 4))
	block := make([]byte, 200<<10)
	for i := range block {
		block[i] = byte(rng.Uint32())
	}
	far := append(bytes.Clone(block), block...) // a match 200 KiB back
	withDict := func(s []byte, dict uint32) []byte {
		s = bytes.Clone(s)
		binary.LittleEndian.PutUint32(s[1:5], dict)
		return s
	}
	cases := []struct {
		name    string
		stream  []byte
		want    []byte
		dictCap uint32
		err     error
	}{
		{"dict 128 MiB", xz(t, data, "--format=lzma", "--lzma1=preset=6,dict=128MiB", "-c"), data, 64 << 20, io.EOF},
		{"dict 2^32-1", withDict(xz(t, data, "--format=lzma", "-c"), 0xffffffff), data, 64 << 20, io.EOF},
		{"lc 0 lp 4 pb 0", xz(t, data, "--format=lzma", "--lzma1=preset=6,lc=0,lp=4,pb=0", "-c"), data, 64 << 20, io.EOF},
		{"a match past the cap", xz(t, far, "--format=lzma", "--lzma1=preset=6,dict=1MiB", "-c"), nil, 64 << 10, ErrDictCap},
	}
	for _, c := range cases {
		if c.want != nil {
			cmd := exec.Command("xz", "-dc", "--format=lzma")
			cmd.Stdin = bytes.NewReader(c.stream)
			if got, err := cmd.Output(); err != nil || !bytes.Equal(got, c.want) {
				t.Fatalf("%s: xz -dc gives %d bytes (%v)", c.name, len(got), err)
			}
		}
		br := bufio.NewReader(io.MultiReader(bytes.NewReader(c.stream), bytes.NewReader([]byte("after"))))
		r, err := NewCappedReader(br, c.dictCap)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got, err := readAll(r, 4096)
		r.Close()
		if !errors.Is(err, c.err) || c.want != nil && !bytes.Equal(got, c.want) {
			t.Errorf("%s: %d bytes, ending with %v; want %v", c.name, len(got), err, c.err)
		}
		if c.err == io.EOF {
			if rest, _ := io.ReadAll(br); string(rest) != "after" {
				t.Errorf("%s: the source holds %q after the stream", c.name, rest)
			}
		}
	}
}
