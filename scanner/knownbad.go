package scanner

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// KnownBadRule is the Rule of a finding for a file whose sha256 is on the
// known-bad list.
const KnownBadRule = "KnownBadFile"

// KnownBad is a set of sha256 digests of content that always blocks: files
// inside layers (Options.KnownBadFiles) or whole blobs (the gate asks Has
// with a blob digest). The zero value and nil are empty sets. It is
// read-only once loaded and safe for concurrent use.
type KnownBad struct {
	notes map[[sha256.Size]byte]string // digest → note from the list ("" if none)
	file  string                       // the file it was loaded from, if any
}

// LoadKnownBad reads a known-bad list: one sha256 digest per line, hex,
// with or without "sha256:", optionally followed by a note after
// whitespace; blank lines and lines starting with # are skipped. Errors
// name the file and line.
func LoadKnownBad(path string) (*KnownBad, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("known-bad list: %w", err)
	}
	defer f.Close()
	k, err := ParseKnownBad(f, path)
	if err != nil {
		return nil, err
	}
	k.file = path
	return k, nil
}

// File is the file LoadKnownBad read the list from ("" for a list parsed
// from elsewhere, and for nil). A Scanner watches it with the rule files.
func (k *KnownBad) File() string {
	if k == nil {
		return ""
	}
	return k.file
}

// ParseKnownBad reads a known-bad list from r; name is used in errors.
func ParseKnownBad(r io.Reader, name string) (*KnownBad, error) {
	k := &KnownBad{notes: map[[sha256.Size]byte]string{}}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		field, note, _ := strings.Cut(text, " ")
		if i := strings.IndexByte(field, '\t'); i >= 0 {
			field, note = field[:i], field[i+1:]+" "+note
		}
		sum, err := parseSHA256(field)
		if err != nil {
			return nil, fmt.Errorf("known-bad list %s:%d: %w", name, line, err)
		}
		k.notes[sum] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(note), "#"))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("known-bad list %s: %w", name, err)
	}
	return k, nil
}

func parseSHA256(s string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	hexPart := strings.ToLower(s)
	if alg, rest, ok := strings.Cut(hexPart, ":"); ok {
		if alg != "sha256" {
			return sum, fmt.Errorf("%q: only sha256 digests are supported", s)
		}
		hexPart = rest
	}
	if len(hexPart) != 2*sha256.Size {
		return sum, fmt.Errorf("%q is not a sha256 digest (64 hex digits)", s)
	}
	if _, err := hex.Decode(sum[:], []byte(hexPart)); err != nil {
		return sum, fmt.Errorf("%q is not a sha256 digest: %w", s, err)
	}
	return sum, nil
}

// Has reports whether a digest ("sha256:<hex>" or "<hex>") is on the list.
// Anything that does not parse as a sha256 digest is not.
func (k *KnownBad) Has(digest string) bool {
	if k.Len() == 0 {
		return false
	}
	sum, err := parseSHA256(digest)
	if err != nil {
		return false
	}
	_, ok := k.notes[sum]
	return ok
}

// Note returns the note the list gives for a digest, if it is listed.
func (k *KnownBad) Note(digest string) (string, bool) {
	if k.Len() == 0 {
		return "", false
	}
	sum, err := parseSHA256(digest)
	if err != nil {
		return "", false
	}
	n, ok := k.notes[sum]
	return n, ok
}

// Len is the number of digests on the list.
func (k *KnownBad) Len() int {
	if k == nil {
		return 0
	}
	return len(k.notes)
}

// Digests returns the listed digests as "sha256:<hex>", sorted.
func (k *KnownBad) Digests() []string {
	if k.Len() == 0 {
		return nil
	}
	out := make([]string, 0, len(k.notes))
	for sum := range k.notes {
		out = append(out, "sha256:"+hex.EncodeToString(sum[:]))
	}
	slices.Sort(out)
	return out
}

// finding returns the finding for a file with this sum, if it is listed.
func (k *KnownBad) finding(sum [sha256.Size]byte, path string) (Finding, bool) {
	note, ok := k.notes[sum]
	if !ok {
		return Finding{}, false
	}
	desc := "file on the known-bad list (sha256:" + hex.EncodeToString(sum[:]) + ")"
	if note != "" {
		desc += ": " + note
	}
	return Finding{Rule: KnownBadRule, Category: CategoryKnownBad, Severity: SeverityHigh, Description: desc, Path: path}, true
}
