package admin

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/bolt"
)

// putVerdict stores a verdict of status st for d under ruleset rid.
func (f *console) putVerdict(t *testing.T, d digest.Digest, rid string, st storage.Status) {
	t.Helper()
	v := storage.Verdict{Digest: d, RulesetID: rid, Context: storage.ContextLayer, Status: st, Time: time.Now().UTC()}
	if err := f.store.PutVerdict(context.Background(), v); err != nil {
		t.Fatal(err)
	}
}

func (f *console) overrides(t *testing.T) map[string]storage.Override {
	t.Helper()
	list, err := f.store.Overrides(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]storage.Override{}
	for _, o := range list {
		out[o.Subject] = o
	}
	return out
}

// remove deletes the override on subject through the API and returns
// the subjects removed.
func (f *console) remove(t *testing.T, subject string) []string {
	t.Helper()
	resp, body := f.req(t, "DELETE", "/admin/api/overrides?subject="+url.QueryEscape(subject), "bearer:"+testAdminToken, nil)
	var got struct{ Removed []string }
	if err := json.Unmarshal(body, &got); resp.StatusCode != 200 || err != nil {
		t.Fatalf("remove %s: %d %s", subject, resp.StatusCode, body)
	}
	slices.Sort(got.Removed)
	return got.Removed
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// Allowing an image by digest writes that one record: its blobs are served
// through it by relation (the gate's business), so no blob record is
// written, and an operator's own override on a blob of it is left as it
// is. Removing the image's allow removes the blob records an earlier
// release made for it (Image set), and only those.
func TestImageAllowWritesOneRecord(t *testing.T) {
	f := newConsole(t)
	rid := f.gate.sc.RulesetID()
	img := digest.FromString("image")
	config, bad, denied, old := digest.FromString("config"), digest.FromString("bad"), digest.FromString("denied"), digest.FromString("old")
	f.gate.images[img] = []gate.Ref{{Digest: config, Context: storage.ContextConfig}, {Digest: bad, Context: storage.ContextLayer},
		{Digest: denied, Context: storage.ContextLayer}, {Digest: old, Context: storage.ContextLayer}}
	f.putVerdict(t, config, rid, storage.StatusClean)
	f.putVerdict(t, bad, rid, storage.StatusBlocked)
	f.putVerdict(t, denied, rid, storage.StatusBlocked)
	ctx := context.Background()
	deny := storage.Override{Subject: denied.String(), Action: storage.Deny, Reason: "our own deny", Actor: "bob", Time: time.Now().UTC()}
	earlier := storage.Override{Subject: old.String(), Action: storage.Allow, Reason: "reviewed", Actor: "admin", Time: time.Now().UTC(), Image: img}
	for _, o := range []storage.Override{deny, earlier} {
		if err := f.store.PutOverride(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	resp, body := f.req(t, "POST", "/admin/api/overrides", "bearer:"+testAdminToken,
		overrideJSON("docker.io/someone/tool@"+img.String(), "allow", "reviewed"), "Content-Type", "application/json")
	var created struct{ Overrides []storage.Override }
	if err := json.Unmarshal(body, &created); resp.StatusCode != 201 || err != nil || len(created.Overrides) != 1 || created.Overrides[0].Subject != img.String() {
		t.Fatalf("allow: %d %s", resp.StatusCode, body)
	}
	got := f.overrides(t)
	if len(got) != 3 || got[denied.String()].Action != storage.Deny || got[denied.String()].Actor != "bob" || got[bad.String()].Subject != "" {
		t.Fatalf("overrides after the image allow: %+v, want the image's, the operator's deny untouched, no blob allows", got)
	}
	if removed := f.remove(t, img.String()); !slices.Equal(removed, sorted(img.String(), old.String())) {
		t.Fatalf("removed %v, want the image and the blob allow an earlier release made for it", removed)
	}
	if got := f.overrides(t); len(got) != 1 || got[denied.String()].Action != storage.Deny {
		t.Fatalf("after removing the image's allow: %+v, want the operator's deny alone", got)
	}
}

// A reason carrying the text earlier releases tied a blob's allow to an
// image with is refused: the store would read the new record as that
// image's and remove it with the image.
func TestReasonWithTheLegacyImageMarkIsRefused(t *testing.T) {
	f := newConsole(t)
	blob, img := digest.FromString("blob"), digest.FromString("image")
	for _, reason := range []string{"reviewed (blob of image " + img.String() + ")", "x (blob of image y"} {
		resp, body := f.req(t, "POST", "/admin/api/overrides", "bearer:"+testAdminToken,
			overrideJSON(blob.String(), "allow", reason), "Content-Type", "application/json")
		if resp.StatusCode != 400 {
			t.Fatalf("reason %q: %d %s", reason, resp.StatusCode, body)
		}
	}
	if got := f.overrides(t); len(got) != 0 {
		t.Fatalf("overrides made: %+v", got)
	}
}

// putLegacyOverride stores o as a release before the Image field wrote a
// blob allow: the image named at the end of its reason, no Image. The
// store gives such a record its Image when it reads it.
func (f *console) putLegacyOverride(t *testing.T, blob, image digest.Digest) {
	t.Helper()
	ctx := context.Background()
	o := storage.Override{Subject: blob.String(), Action: storage.Allow, Actor: "admin", Time: time.Now().UTC(),
		Reason: "reviewed (blob of image " + image.String() + ")"}
	if err := f.store.PutOverride(ctx, o); err != nil {
		t.Fatal(err)
	}
	read, err := f.store.Override(ctx, blob.String())
	if err != nil {
		t.Fatal(err)
	}
	if read.Image != image {
		t.Fatalf("the store read the old record's image as %q, want %s", read.Image, image)
	}
}

// A blob allow stored in the old shape goes with its image's allow.
func TestOldShapeBlobOverrideGoesWithItsImage(t *testing.T) {
	f := newConsole(t)
	img, blob, unrelated := digest.FromString("image"), digest.FromString("blob"), digest.FromString("unrelated")
	if err := f.store.PutOverride(context.Background(), storage.Override{Subject: img.String(), Action: storage.Allow,
		Actor: "admin", Reason: "reviewed", Time: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	f.putLegacyOverride(t, blob, img)
	f.putLegacyOverride(t, unrelated, digest.FromString("another image"))
	if removed := f.remove(t, img.String()); !slices.Equal(removed, sorted(img.String(), blob.String())) {
		t.Fatalf("removed %v, want the image and its blob", removed)
	}
	if got := f.overrides(t); len(got) != 1 || got[unrelated.String()].Subject == "" {
		t.Fatalf("left: %+v, want the other image's blob allow only", got)
	}
}

// The overrides a store of the last release holds (storage/testdata) keep
// their meaning here: removing the image's allow removes the allow it
// made for its blob, and nothing else.
func TestOverridesOfTheLastReleaseGoWithTheirImage(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "storage", "testdata", "overrides-v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "verdicts.db")
	if err := os.WriteFile(path, src, 0o600); err != nil {
		t.Fatal(err)
	}
	old, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { old.Close() })
	f := newConsole(t, func(o *Options) { o.Overrides = old })
	f.store = old
	var image, blob string
	for subject, o := range f.overrides(t) {
		switch {
		case strings.HasPrefix(subject, "sha256:1111"):
			image = subject
		case strings.HasPrefix(subject, "sha256:2222"):
			blob = subject
			if o.Image == "" {
				t.Fatalf("the store read the old blob allow without its image: %+v", o)
			}
		}
	}
	if image == "" || blob == "" {
		t.Fatalf("the test data lacks the image or its blob: %v", f.overrides(t))
	}
	if removed := f.remove(t, image); !slices.Equal(removed, sorted(image, blob)) {
		t.Fatalf("removed %v, want the image and its blob", removed)
	}
	left := f.overrides(t)
	for _, s := range []string{"docker.io/library/alpine", "docker.io/evil/miner"} {
		if _, ok := left[s]; !ok {
			t.Errorf("the override on %s went too", s)
		}
	}
	if len(left) != 3 {
		t.Errorf("%d overrides left, want 3: %v", len(left), left)
	}
}
