package scanner

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// packEncode writes data as pack(1) does: Huffman codes of the bytes and
// an end-of-block code, the longest length's codes last (see packTree).
func packEncode(t testing.TB, data []byte) []byte {
	t.Helper()
	const eob = 256
	freq := map[int]int{eob: 1}
	for _, b := range data {
		freq[int(b)]++
	}
	lens := huffmanLengths(freq)
	maxLen := 0
	for _, l := range lens {
		maxLen = max(maxLen, l)
	}
	if maxLen > packMaxBits {
		t.Fatalf("a code of %d bits", maxLen)
	}
	if lens[eob] != maxLen { // the end-of-block code is one of the longest
		for s, l := range lens {
			if l == maxLen {
				lens[s], lens[eob] = lens[eob], maxLen
				break
			}
		}
	}
	byLen := make([][]int, maxLen+1)
	for s := range 256 {
		if l, ok := lens[s]; ok {
			byLen[l] = append(byLen[l], s)
		}
	}
	byLen[maxLen] = append(byLen[maxLen], eob)
	// Codes: at each length, internal nodes first, then the leaves.
	code := map[int]uint32{}
	nodes := 0
	parents := make([]int, maxLen+1)
	for l := maxLen; l >= 1; l-- {
		nodes >>= 1
		parents[l] = nodes
		nodes += len(byLen[l])
	}
	for l := 1; l <= maxLen; l++ {
		for i, s := range byLen[l] {
			code[s] = uint32(parents[l] + i)
		}
	}
	out := binary.BigEndian.AppendUint32(slices.Clone(packMagic), uint32(len(data)))
	out = append(out, byte(maxLen))
	for l := 1; l <= maxLen; l++ {
		n := len(byLen[l])
		if l == maxLen {
			n -= 2
		}
		out = append(out, byte(n))
	}
	for l := 1; l <= maxLen; l++ {
		for _, s := range byLen[l] {
			if s != eob {
				out = append(out, byte(s))
			}
		}
	}
	var acc uint64
	var nacc int
	put := func(s int) {
		acc, nacc = acc<<lens[s]|uint64(code[s]), nacc+lens[s]
		for nacc >= 8 {
			out = append(out, byte(acc>>(nacc-8)))
			nacc -= 8
		}
	}
	for _, b := range data {
		put(int(b))
	}
	put(eob)
	if nacc > 0 {
		out = append(out, byte(acc<<(8-nacc)))
	}
	return out
}

type hnode struct {
	w   int
	sym []int
}
type hheap []hnode

func (h hheap) Len() int           { return len(h) }
func (h hheap) Less(i, j int) bool { return h[i].w < h[j].w }
func (h hheap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *hheap) Push(x any)        { *h = append(*h, x.(hnode)) }
func (h *hheap) Pop() any          { o := *h; x := o[len(o)-1]; *h = o[:len(o)-1]; return x }

// huffmanLengths are the code lengths of a Huffman code for freq.
func huffmanLengths(freq map[int]int) map[int]int {
	h := &hheap{}
	for s, w := range freq {
		heap.Push(h, hnode{w, []int{s}})
	}
	lens := map[int]int{}
	for h.Len() > 1 {
		a, b := heap.Pop(h).(hnode), heap.Pop(h).(hnode)
		for _, s := range slices.Concat(a.sym, b.sym) {
			lens[s]++
		}
		heap.Push(h, hnode{a.w + b.w, slices.Concat(a.sym, b.sym)})
	}
	return lens
}

// The miner in pack(1)'s format, which gzip -d unpacks: as a file, behind
// a script that pipes it to gzip -dc, in a .tar.gz, as two members gzip
// joins, and cut after the miner (gzip writes what it decoded) (outside
// attack round 21, F2). Every case is checked against gzip -dc.
func TestPackRead(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	whole := packEncode(t, miner)
	text := bytes.Repeat([]byte("a line of the changelog\n"), 400)
	half := len(miner) / 2
	long := packEncode(t, append(slices.Clone(miner), text...))
	cases := []struct {
		name   string
		stream []byte
		want   []byte // what gzip -dc writes
	}{
		{"one member", whole, miner},
		{"two members", slices.Concat(packEncode(t, miner[:half]), packEncode(t, miner[half:])), miner},
		{"cut after the miner", long[:len(long)-100], miner},
	}
	for _, c := range cases {
		if got := toolOutput("gzip", c.stream); !bytes.HasPrefix(got, c.want) {
			t.Fatalf("%s: gzip -dc writes %d bytes, not the miner", c.name, len(got))
		}
		head := "#!/bin/sh\ntail -c +59 \"$0\" | gzip -dc > /tmp/k; exec /tmp/k\n"
		for _, f := range []tfile{
			{name: "opt/x.z", mode: 0o644, data: c.stream},
			{name: "opt/run.sh", mode: 0o755, data: append([]byte(head), c.stream...)},
			{name: "opt/x.tar.gz", mode: 0o644, data: gzipBytes(t, tarLayer(t, tfile{name: "x.z", mode: 0o644, data: c.stream}))},
		} {
			res, err := scanOne(t, s, f)
			if err != nil {
				t.Fatalf("%s, %s: %v", c.name, f.name, err)
			}
			if !hasFindingIn(res.Findings, "MinerXMRig") {
				t.Errorf("%s, %s: findings %v, want MinerXMRig inside it", c.name, f.name, res.Findings)
			}
		}
	}
	// Text that only starts as a pack header decodes to nothing.
	if isPack([]byte("\x1f\x1e\x00\x00\x00\x10\x1e\xff\xff\xff")) {
		t.Error("a header with too many leaves is taken for pack's")
	}
}
