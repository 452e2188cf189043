package gate

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

func TestBufPipeCarriesEveryByteInOrder(t *testing.T) {
	data := make([]byte, 3<<20+12345)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	p := newBufPipe(700 << 10) // smaller than the data: the writer must wait
	go func() {
		rest := data
		for len(rest) > 0 {
			n := min(len(rest), 1+r.IntN(500<<10))
			if _, err := p.Write(rest[:n]); err != nil {
				p.CloseWrite(err)
				return
			}
			rest = rest[n:]
		}
		p.CloseWrite(nil)
	}()
	got, err := io.ReadAll(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d of %d bytes, err %v", len(got), len(data), err)
	}
}

func TestBufPipeErrors(t *testing.T) {
	p := newBufPipe(1 << 20)
	boom := errors.New("upstream cut the connection")
	if _, err := p.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	p.CloseWrite(boom)
	got, err := io.ReadAll(p)
	if string(got) != "partial" || !errors.Is(err, boom) {
		t.Fatalf("got %q, %v", got, err)
	}

	p = newBufPipe(10)
	done := errors.New("scanner done")
	go p.CloseRead(done)
	// A writer blocked on a full buffer is released by CloseRead.
	if _, err := p.Write(make([]byte, 1<<20)); !errors.Is(err, done) {
		t.Fatalf("write after CloseRead: %v", err)
	}
}
