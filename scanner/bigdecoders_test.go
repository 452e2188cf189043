package scanner

import (
	"bytes"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// A walk that needs a decoder of more than bigDecoder bytes waits while
// maxBigDecoders others hold one, and goes on when one is given back;
// decoders of xz's default size never wait.
func TestBigDecodersTakeTurns(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	xz9 := tfile{name: "opt/xmrig.xz", mode: 0o644, data: cli(t, samples.XMRig(), "xz", "--lzma2=dict=64MiB", "-c")}
	xz6 := tfile{name: "opt/xmrig.xz", mode: 0o644, data: cli(t, samples.XMRig(), "xz", "-6", "-c")}
	for range maxBigDecoders {
		s.bigDecoders <- struct{}{} // every turn taken
	}
	type scanned struct {
		res Result
		err error
	}
	big := make(chan scanned, 1)
	go func() {
		res, err := s.ScanLayer(t.Context(), bytes.NewReader(tarLayer(t, xz9)), Interactive)
		big <- scanned{res, err}
	}()
	res, err := s.ScanLayer(t.Context(), bytes.NewReader(tarLayer(t, xz6)), Interactive)
	if err != nil || !hasFinding(res.Findings, "MinerXMRig", "/opt/xmrig.xz!xmrig") {
		t.Fatalf("xz -6 while every turn is taken: %v, %v", res.Findings, err)
	}
	select {
	case r := <-big:
		t.Fatalf("a 64 MiB dictionary was set up while every turn was taken: %v, %v", r.res.Findings, r.err)
	default:
	}
	<-s.bigDecoders
	r := <-big
	if r.err != nil || !hasFinding(r.res.Findings, "MinerXMRig", "/opt/xmrig.xz!xmrig") {
		t.Fatalf("xz with a 64 MiB dictionary once a turn is free: %v, %v", r.res.Findings, r.err)
	}
	if n := len(s.bigDecoders); n != maxBigDecoders-1 {
		t.Fatalf("%d turns held after the scan, want %d (its own given back)", n, maxBigDecoders-1)
	}
}
