package scanner

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"slices"
)

// minBase64Run is the shortest run of base64 in a file that is decoded
// and scanned: shorter runs hide too little to be worth decoding, and
// keeping it large keeps ordinary files cheap.
const minBase64Run = 4 << 10

// payload is a base64 run of a file, to be decoded from skip characters
// into it: text is the run's characters (shared by the run's four
// alignments), ends where each separately padded run of a stream ends in
// it (nil for one run). It is decoded only when it is scanned, one
// alignment at a time, so a file's payloads hold no more memory than
// their characters and the one being scanned.
type payload struct {
	offset int
	skip   int
	text   []byte
	ends   []int
	// unescaped says that offset is in the copy of the chain at span in
	// the file with its escapes replaced (see payloadescapes.go).
	unescaped bool
	span      int
	// from and to are where the chain the payload is read from starts
	// and ends in the file (see payloadsIn).
	from, to int
	// enc is how its characters are decoded: base64 but for hex and
	// byte escapes (see payloadhex.go).
	enc encoding
	// quoted says that a run of hex pairs is quoted strings, its text
	// here already without its quotes (see hexRunStart): a run read
	// from the spool takes them out as it goes.
	quoted bool
	// stream says that text is read as basencRun reads it, padding
	// ending a group and the text going on (see payloadblocks.go).
	stream bool
}

// decodeInto decodes the payload into buf's memory, grown if need be, and
// returns the bytes.
func (p payload) decodeInto(buf []byte) []byte {
	if p.stream {
		return decodeBasenc(buf[:0], p.text, p.skip, basencs[p.enc])
	}
	switch p.enc {
	case encHex:
		return decodeHexText(buf[:0], p.text, p.skip)
	case encEscaped, encEscapedEcho:
		return decodeEscapes(buf[:0], p.text, p.enc == encEscapedEcho)
	case encHexPairs:
		return decodeHexPairs(buf[:0], p.text, p.skip)
	case encBase32, encBase32Hex, encBase2MSB, encBase2LSB:
		return decodeBasenc(buf[:0], p.text, p.skip, basencs[p.enc])
	case encAscii85, encBase85, encZ85:
		return decodeBase85(buf[:0], p.text, p.skip, base85s[p.enc])
	case encXxdDump:
		return decodeXxdDump(buf[:0], p.text, p.skip)
	}
	if p.ends != nil {
		return decodeStream(buf[:0], p.text, p.ends, p.skip)
	}
	return decodeBase64Run(buf[:0], p.text, p.skip)
}

// whole says whether the payload's letters from its skip-th on end in a
// whole group (base64's padding counted as letters), as they do at the
// alignment the text was written at when nothing follows it: always for
// readings that have no alignments to guess (hex pairs, escapes) and for
// streams, whose groups end at their padding.
func (p payload) whole() bool {
	group := 0
	switch {
	case p.stream || p.ends != nil:
		return true
	case p.enc == encBase64 || p.enc == encBase64URL:
		group = 4
	case p.enc == encHex:
		group = 2
	case basencs[p.enc] != nil:
		group = basencs[p.enc].group
	case base85s[p.enc] != nil:
		n := 0
		for _, c := range p.text[min(p.skip, len(p.text)):] {
			if c == 'z' && p.enc == encAscii85 {
				n += 5
			} else {
				n++
			}
		}
		return n%5 == 0
	default:
		return true
	}
	return (len(p.text)-p.skip)%group == 0
}

// name is how findings name the payload inside its file, whose bytes
// were searched from base on (see item.base).
// A payload of an unescaped chain is "base64@SPAN+unescaped", followed
// by "@OFFSET" when it starts further into the copy than its first
// character, and by "+SKIP" as any other.
func (p payload) name(base int64) string {
	name := fmt.Sprintf("%s@%d", p.enc.prefix(), base+int64(p.offset))
	if p.unescaped {
		name = fmt.Sprintf("%s@%d+unescaped", p.enc.prefix(), base+int64(p.span))
		if p.offset > 0 {
			name += fmt.Sprintf("@%d", p.offset)
		}
	}
	if p.skip > 0 {
		name += fmt.Sprintf("+%d", p.skip)
	}
	return name
}

// base64Payloads decodes every run of at least minBase64Run base64
// characters in data, as far as each decodes. A run is a chain of pieces
// of base64 joined as the shell or language that holds them joins them
// (see payloadjoin.go); it ends after padding ("=" is only ever last),
// and a run after it in its chain goes on the stream (see appendChain).
// What a script puts around the payload may shift it against base64's
// groups of four ("sh" before a here-document, a piece that is not a
// multiple of four), so each run is decoded at the four alignments, each
// scanned. Payloads hold their characters, not data, so data may be
// recycled once this returns.
//
// A run of minBase64Run characters spans at least as many bytes, so it
// covers one of the positions probed below, half a run apart, and from a
// position inside it a piece of it starts within maxGap bytes. Only the
// chains of pieces found there are read: a file with no piece near a
// probe costs a look at a few dozen bytes per 2 KiB. A chain found at a
// probe starts after the probe before it (or that probe would have found
// it), so one of minBase64Run characters or more goes on past the next
// probe; one that stops short of it is only walked through, never read
// back nor decoded.
func base64Payloads(data []byte) []payload {
	return appendHexPayloads(probePayloads(data, true), data)
}

// appendHexPayloads appends to out, data's base64 payloads, its payloads
// in hex, in byte escapes (see payloadhex.go), in base64url (see
// payloadbasenc.go), in base85 (see payloadbase85.go) and in blocks of
// short lines (see payloadblocks.go), all in the file's order, as the search of a spool
// takes them: a run of base64url before any other payload that overlaps
// it (base64's chains of its pieces between its - and _), so that the
// spool's search reads it whole where it goes on past a window.
func appendHexPayloads(out []payload, data []byte) []payload {
	out = appendHexPairRuns(appendEscapedRuns(out, data), data)
	out = appendXxdDumps(out, data) // a dump's lines are read as one, not as hex pairs
	k := len(out)
	out = appendBlocks(appendBase85Runs(appendURLRuns(out, data), data), data)
	if len(out) < 2 {
		return out
	}
	var urls []payload
	for _, p := range out[k:] {
		if p.enc == encBase64URL {
			urls = append(urls, p)
		}
	}
	key := func(p payload) (int, int) {
		if p.enc == encBase64URL {
			return p.from, 0
		}
		for _, u := range urls {
			if u.from < p.to && p.from < u.to {
				return u.from, 1
			}
		}
		return p.from, 1
	}
	slices.SortStableFunc(out, func(a, b payload) int {
		ka, ra := key(a)
		kb, rb := key(b)
		return cmp.Or(cmp.Compare(ka, kb), cmp.Compare(ra, rb))
	})
	return out
}

// probePayloads is base64Payloads, which also reads the chains written
// with their holder's escapes when unescape is set.
func probePayloads(data []byte, unescape bool) []payload {
	const step = minBase64Run / 2
	var out []payload
	done := 0 // data[:done] is searched
	for p := step - 1; p < len(data); p += step {
		if p < done {
			continue
		}
		i := p
		if isB64[data[p]] {
			i = segmentStart(data, p)
		}
		q, seen, _, ok := searchPiece(data, i, p+maxGap)
		if !ok || elementBefore(data, q.start) {
			if first, ok := arrayAround(data, p, max(done, p-step), false); ok {
				if end, past := chainPast(data, first, p+step); end > p {
					if past {
						out, end = appendChainOf(out, data, arrayChainStart(data, first, done, p-step), unescape)
					}
					done = end
					continue
				}
			}
		}
		if !ok {
			// A long stretch that is no piece ("====…") is read once.
			done = seen
			continue
		}
		if end, past := chainPast(data, q, p+step); !past {
			done = end
			continue
		}
		out, done = appendChainOf(out, data, arrayChainStart(data, q, done, p-step), unescape)
	}
	return out
}

// chainStart is the first piece of q's chain. It walks forward from
// data[from:] to q, each piece read once, and then back from the first
// piece of q's chain there, which is its start unless the chain begins
// before from. Walking back from q alone (prevPiece) reads the bytes
// before every piece of the chain again: for a block wrapped in short
// lines (a table of numbers), many times its length.
func chainStart(data []byte, q piece, from int) piece {
	if from < q.start && isB64[data[from]] {
		from = segmentStart(data, from)
	}
	x, ok := nextPiece(data, from, q.start)
	for ok && x.start < q.start {
		first := x
		for x.start < q.start {
			next, linked := nextInChain(data, x)
			if !linked {
				break
			}
			x = next
		}
		if x.start == q.start {
			q = first
			break
		}
		x, ok = nextPiece(data, x.end, q.start)
	}
	for {
		prev, ok := prevPiece(data, q)
		if !ok {
			return q
		}
		q = prev
	}
}

// chainPast walks the chain of q forward and says whether it goes on
// past limit; end is the end of the last piece it read.
func chainPast(data []byte, q piece, limit int) (end int, past bool) {
	for q.end <= limit {
		next, ok := nextInChain(data, q)
		if !ok {
			return q.end, false
		}
		q = next
	}
	return q.end, true
}

// appendChain appends the payloads of the runs of the chain that starts
// with the piece first, and returns where the chain ends. A run that
// ends in padding and the runs that follow it in the chain are a stream,
// as base64 -d reads separately padded chunks one after another ("QQ==",
// then "QkI="): the stream is decoded whole, each run from its own
// alignment (see decodeStream), in place of its first run alone. Each run
// after the first is also decoded on its own, at the four alignments: a
// name or a word taken for the stream's first run ("NAME=" of an empty
// assignment) does not shift the payload that follows it.
func appendChain(out []payload, data []byte, first piece) ([]payload, int) {
	var text []byte
	var ends []int // where each run of the stream ends in text
	offset := first.start
	held := len(out) // payloads before those that hold text and ends
	for {
		start := len(text)
		var last piece
		var lineAt int
		text, last, lineAt = runFrom(data, first, text)
		if len(ends) > 0 {
			out = appendRun(out, first.start, text[start:])
		}
		if lineAt > start {
			// Words before a wrapped block joined to it (a
			// here-document's command and marker, an output path):
			// the block is also read from its first line.
			out = appendRun(out, first.start, text[lineAt:])
		}
		ends = append(ends, len(text))
		next, ok := nextInChain(data, last)
		if !ok || !last.padded {
			out = appendStream(out, offset, text, ends)
			if len(out) > held { // payloads hold them: the next stream gets its own
				text, ends, held = nil, nil, len(out)
			}
			text, ends, offset = text[:0], ends[:0], next.start
		}
		if !ok {
			return out, last.end
		}
		first = next
	}
}

// appendStream appends the payloads of the stream at offset whose
// characters are text, its runs ending at ends: its first run's alone
// when it is one run or does not look encoded.
func appendStream(out []payload, offset int, text []byte, ends []int) []payload {
	if len(ends) > 1 {
		out = appendBasenc(out, offset, text) // padding read through as in base64's streams
	}
	if len(ends) == 1 || len(text) < minBase64Run || !looksEncoded(text) {
		return appendRun(out, offset, text[:ends[0]])
	}
	for skip := range 4 {
		out = append(out, payload{offset: offset, skip: skip, text: text, ends: ends})
	}
	return out
}

// decodeStream appends to out text decoded from its skip-th character as
// base64 -d does: each run, up to ends, in groups of four from its start,
// the outputs one after another. It stops in the first run that does not
// decode whole.
func decodeStream(out, text []byte, ends []int, skip int) []byte {
	from := skip
	for _, end := range ends {
		if from >= end {
			break
		}
		chunk := text[from:end]
		whole := len(chunk)%4 == 0
		var err error
		out, err = decodeAppend(out, chunk[:len(chunk)/4*4])
		if err != nil || !whole {
			break
		}
		from = end
	}
	return out
}

// decodeAppend appends the decoding of text, whole groups of four, to
// out, up to its first group that does not decode.
func decodeAppend(out, text []byte) ([]byte, error) {
	out = slices.Grow(out, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(out[len(out):cap(out)], text)
	return out[:len(out)+n], err
}

// appendRun appends the payloads of the run at offset whose characters
// are text, when it is long enough and looks encoded.
func appendRun(out []payload, offset int, text []byte) []payload {
	if len(text) >= minBase64Run && isHexText(text) {
		return appendHexRun(out, offset, text)
	}
	out = appendBasenc(out, offset, text)
	if len(text) >= minBase64Run && mostlyHex(text) {
		// Hex with stray letters (7fz45z4c…, or one here and there in
		// plain hex), which xxd -r -p passes over.
		for skip := range 2 {
			out = append(out, payload{offset: offset, skip: skip, text: text, enc: encHexPairs})
		}
	}
	if len(text) < minBase64Run || !looksEncoded(text) {
		return out
	}
	for skip := range 4 {
		out = append(out, payload{offset: offset, skip: skip, text: text})
	}
	return out
}

// decodeBase64Run appends to out text, a run's characters, decoded from
// its skip-th character, up to its first group that does not decode.
func decodeBase64Run(out, text []byte, skip int) []byte {
	if skip >= len(text) {
		return out
	}
	clean := text[skip:]
	out, _ = decodeAppend(out, clean[:len(clean)/4*4])
	return out
}

// looksEncoded says whether text, a run's characters, looks like base64
// of data somewhere: in one of its stretches of minBase64Run characters
// (the last one ending it), a digit in 32 or more, and an upper-case and
// a lower-case letter in 8 or more each. Base64 of binaries and of text
// has about one digit in ten (bash, argparse.py and the GPL measured 9 to
// 11%) and both cases by the third; words joined from a list ("abc",
// "def", … in a lexer's tables), a binary's symbol names, a file of one
// letter repeated and hex (PostScript images) fail one of these, and are
// not decoded. Stretches, not the whole: padding a payload with zeros
// ("AAAA…") does not hide it.
func looksEncoded(text []byte) bool {
	for i := 0; i < len(text); i += minBase64Run {
		w := text[max(0, min(i, len(text)-minBase64Run)):min(len(text), i+minBase64Run)]
		var digits, upper, lower int
		for _, c := range w {
			switch {
			case c >= '0' && c <= '9':
				digits++
			case c >= 'A' && c <= 'Z':
				upper++
			case c >= 'a' && c <= 'z':
				lower++
			}
		}
		if digits*32 >= len(w) && upper*8 >= len(w) && lower*8 >= len(w) {
			return true
		}
	}
	return false
}
