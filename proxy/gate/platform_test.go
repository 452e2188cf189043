package gate

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// One platform matcher for prefetch, warm and pullgate scan: a platform
// written without a variant takes any variant of its architecture; one
// with a variant takes that variant (an entry without one stands for its
// architecture's default); names are normalised as containerd does.
func TestPlatformMatches(t *testing.T) {
	p := func(os, arch, variant string) *ocispec.Platform {
		return &ocispec.Platform{OS: os, Architecture: arch, Variant: variant}
	}
	for _, c := range []struct {
		want string
		got  *ocispec.Platform
		ok   bool
	}{
		{"linux/amd64", p("linux", "amd64", ""), true},
		{"linux/amd64", p("linux", "x86_64", ""), true},
		{"linux/arm64", p("linux", "arm64", "v8"), true},
		{"linux/arm64", p("linux", "aarch64", ""), true},
		{"linux/arm", p("linux", "arm", "v6"), true},
		{"linux/arm", p("linux", "arm", "v7"), true},
		{"linux/arm/v7", p("linux", "arm", "v7"), true},
		{"linux/arm/v7", p("linux", "arm", ""), true},
		{"linux/arm/v7", p("linux", "arm", "v6"), false},
		{"linux/arm64", p("linux", "amd64", ""), false},
		{"linux/amd64", p("windows", "amd64", ""), false},
		{"linux/amd64", nil, false},
		{"not a platform", p("linux", "amd64", ""), false},
	} {
		if got := PlatformMatches(c.want, c.got); got != c.ok {
			t.Errorf("PlatformMatches(%q, %+v) = %v, want %v", c.want, c.got, got, c.ok)
		}
	}
}
