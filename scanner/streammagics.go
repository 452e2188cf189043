package scanner

import "github.com/pullgate/pullgate/internal/bytepairs"

// streamMagics are what streamStarts looks for: each stream's magic
// number and where in it the bytes it is found by start (anchor). back is
// how far before the pattern the stream starts (bzip2's "BZh9" before its
// block magic). They are found by the pair of bytes at anchor, in two
// passes of four pairs each (see magicSets); a program holds any one
// byte of them every few hundred bytes, a pair about a thousand times
// more rarely. lzip, which pullgate cannot decode, is taken for a stream
// behind text only (see streamText), and .lzma, whose header is a weak
// signature that a program's bytes match every few kilobytes, is looked
// for only where the text ends: its second byte is a NUL, which ends it.
var streamMagics = []streamMagic{
	{m: gzipMagic},
	{m: xzMagic},
	{m: zstdMagic},
	{m: bzip2Block, anchor: 2, back: 4}, // "1AY&SY" after "BZh1".."BZh9"
	{m: []byte{0x1f, 0x9d}, set: 1},     // compress(1)
	{m: []byte{0x04, 0x22, 0x4d, 0x18}, set: 1},
	{m: []byte{0x02, 0x21, 0x4c, 0x18}, set: 1}, // LZ4's legacy frame (lz4 -l)
	{m: gzipOldMagic, set: 1},                   // gzip 0.5's, which gzip -d reads
	{m: []byte("LZIP"), set: 3, textOnly: true}, // then its version, 0 or 1
	{m: lzmaProps, set: noSet, textOnly: true},  // .lzma
	// zlib, by its header's usual forms (see isZlib): looked for behind
	// text only, and in a XAR archive, where each file is one; a program
	// holds these pairs every 64 KiB, each a trial decode.
	{m: []byte{0x78, 0x9c}, set: 2, textOnly: true},
	{m: []byte{0x78, 0xda}, set: 2, textOnly: true},
	{m: []byte{0x78, 0x01}, set: 2, textOnly: true},
	{m: []byte{0x78, 0x5e}, set: 2, textOnly: true},
	// pack(1), which gzip -d unpacks: behind text only, in a pass over
	// the text alone, with lzip's.
	{m: packMagic, set: 3, textOnly: true},
}

// xarMagic starts a XAR archive.
var xarMagic = []byte("xar!")

// noSet marks a magic found by no pass of pairs: .lzma's.
const noSet = -1

// lzmaProps is the properties byte that starts an .lzma header as xz and
// lzma-utils write it (lc 3, lp 0, pb 2); isLzmaAlone checks the rest.
var lzmaProps = []byte{0x5d}

// textOnlyReach is how far before the text's end a magic found by no
// pass may start: .lzma's NUL is its second byte, but for a dictionary
// size of 2^32-1, which unlzma and lzcat read (outside attack round 22b,
// F5): then its first NUL is the range coder's first byte, after the
// 13-byte header, or one in a known size.
const textOnlyReach = 13

type streamMagic struct {
	m        []byte
	anchor   int
	back     int
	set      int // which of magicSets finds it
	textOnly bool
}

// magicSets are the passes of streamStarts: the magics each finds, and
// the pairs of bytes it finds them by.
var magicSets = func() (sets [4]struct {
	magics   []streamMagic
	pairs    bytepairs.Set
	textOnly bool // every magic of the set: the pass stops where the text does
}) {
	for i := range sets {
		var pairs [][2]byte
		sets[i].textOnly = true
		for _, sm := range streamMagics {
			if sm.set == i {
				sets[i].magics = append(sets[i].magics, sm)
				pairs = append(pairs, [2]byte{sm.m[sm.anchor], sm.m[sm.anchor+1]})
				sets[i].textOnly = sets[i].textOnly && sm.textOnly
			}
		}
		sets[i].pairs = bytepairs.NewSet(pairs...)
	}
	return sets
}()
