package gate

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"
)

// One index request prefetches at most one entry for each configured
// platform, the one a client would pick (the first that matches), however
// many entries the index lists for it.
func TestPrefetchTakesOneEntryAPlatform(t *testing.T) {
	type platform struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	}
	type entry struct {
		MediaType string        `json:"mediaType"`
		Digest    digest.Digest `json:"digest"`
		Size      int           `json:"size"`
		Platform  platform      `json:"platform"`
	}
	var idx struct {
		Manifests []entry `json:"manifests"`
	}
	for i := range 200 {
		idx.Manifests = append(idx.Manifests, entry{MediaType: MediaTypeOCIManifest,
			Digest: digest.FromString(fmt.Sprint(i)), Size: 1, Platform: platform{"linux", "amd64"}})
	}
	idx.Manifests = append(idx.Manifests, entry{MediaType: MediaTypeOCIManifest,
		Digest: digest.FromString("arm"), Size: 1, Platform: platform{"linux", "arm64"}})
	body, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	got := platformsOf(body, []string{"linux/amd64", "linux/arm64", "linux/s390x"})
	if len(got) != 2 || got[0].Digest != digest.FromString("0") || got[1].Digest != digest.FromString("arm") {
		t.Fatalf("prefetching %d entries: %+v", len(got), got)
	}
}
