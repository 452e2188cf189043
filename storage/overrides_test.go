package storage_test

import (
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/storage"
)

// Only a well-formed mark at the very end of a legacy record's reason
// names an image; a record that has Image keeps it.
func TestDecodeOverrideLegacyImage(t *testing.T) {
	img := digest.FromString("image")
	other := digest.FromString("other")
	cases := []struct {
		name string
		raw  string
		want digest.Digest
	}{
		{"legacy blob allow", `{"subject":"` + other.String() + `","action":"allow","reason":"ok (blob of image ` + img.String() + `)","actor":"a"}`, img},
		{"no mark", `{"subject":"` + other.String() + `","action":"allow","reason":"ok","actor":"a"}`, ""},
		{"mark not at the end", `{"subject":"` + other.String() + `","action":"allow","reason":"ok (blob of image ` + img.String() + `) later","actor":"a"}`, ""},
		{"unclosed mark", `{"subject":"` + other.String() + `","action":"allow","reason":"ok (blob of image ` + img.String() + `]","actor":"a"}`, ""},
		{"malformed digest", `{"subject":"` + other.String() + `","action":"allow","reason":"ok (blob of image sha256:abc)","actor":"a"}`, ""},
		{"image field wins", `{"subject":"` + other.String() + `","action":"allow","reason":"ok (blob of image ` + img.String() + `)","actor":"a","image":"` + other.String() + `"}`, other},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := storage.DecodeOverride([]byte(tc.raw))
			if err != nil {
				t.Fatal(err)
			}
			if o.Image != tc.want {
				t.Errorf("Image = %q, want %q", o.Image, tc.want)
			}
		})
	}
	if _, err := storage.DecodeOverride([]byte(`{"subject":`)); err == nil {
		t.Error("a truncated record decoded")
	}
}
