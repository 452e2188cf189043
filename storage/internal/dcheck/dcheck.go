package dcheck

import (
	"strings"

	"github.com/opencontainers/go-digest"
)

// Validate is d.Validate(), without its regexp for a sha256 digest.
func Validate(d digest.Digest) error {
	if s := string(d); len(s) == len("sha256:")+64 && strings.HasPrefix(s, "sha256:") && lowerHex(s[len("sha256:"):]) {
		return nil
	}
	return d.Validate()
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
