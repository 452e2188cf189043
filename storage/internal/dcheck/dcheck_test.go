package dcheck

import (
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// Validate agrees with go-digest on every case, the fast one included.
func TestValidateAgreesWithGoDigest(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 4)
	for _, d := range []digest.Digest{
		digest.Digest("sha256:" + hex),
		digest.Digest("sha256:" + strings.ToUpper(hex)),
		digest.Digest("sha256:" + hex[:63]),
		digest.Digest("sha256:" + hex + "0"),
		digest.Digest("sha256:" + hex[:63] + "g"),
		digest.Digest("sha256:" + hex[:63] + "/"),
		digest.Digest("sha512:" + hex + hex),
		digest.Digest("sha384:" + hex),
		digest.Digest("md5:" + hex[:32]),
		digest.Digest(hex),
		"",
	} {
		want, got := d.Validate(), Validate(d)
		if (want == nil) != (got == nil) {
			t.Errorf("%q: go-digest says %v, Validate %v", d, want, got)
		}
	}
}
