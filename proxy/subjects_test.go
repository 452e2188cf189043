package proxy

import (
	"testing"

	"github.com/pullgate/pullgate/proxy/admin"
)

// Override subjects are stored as the registry API names what it serves
// (the admin page parses them with the proxy's canonical names):
// a subject in another spelling would be accepted and never match.
func TestParseSubjectCanonical(t *testing.T) {
	const d = "sha256:9a0e4f4d6a6b1c8ce1a3c6c2f4c5ef3e0e0e7f1f4b0a8f7c6d5e4f3a2b1c0d9e"
	for _, c := range []struct{ in, subject, image string }{
		{"DOCKER.IO/t/epsilon", "docker.io/t/epsilon", ""},
		{"Index.Docker.IO/library/alpine", "docker.io/library/alpine", ""},
		{"registry-1.docker.io/someone/tool", "docker.io/someone/tool", ""},
		{"registry.hub.docker.com/someone/tool", "docker.io/someone/tool", ""},
		{"alpine", "docker.io/library/alpine", ""},
		{"someone/tool", "docker.io/someone/tool", ""},
		{"GHCR.io/owner/image", "ghcr.io/owner/image", ""},
		{"localhost:5000/x", "localhost:5000/x", ""},
		{" " + d + " ", d, ""},
		{"DOCKER.IO/someone/tool@" + d, d, "docker.io/someone/tool@" + d},
	} {
		subject, image, err := admin.ParseSubject(c.in, canonicalName)
		if err != nil || subject != c.subject || image != c.image {
			t.Errorf("ParseSubject(%q) = %q, %q, %v; want %q, %q", c.in, subject, image, err, c.subject, c.image)
		}
	}
	for _, in := range []string{"", "docker.io/Someone/tool", "alpine:3.20", "docker.io//x"} {
		if s, _, err := admin.ParseSubject(in, canonicalName); err == nil {
			t.Errorf("ParseSubject(%q) = %q, want an error", in, s)
		}
	}
}
