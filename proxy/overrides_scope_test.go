package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

func (f *fixture) override(t *testing.T, subject string, a storage.Action) {
	t.Helper()
	o := storage.Override{Subject: subject, Action: a, Reason: "operator's call", Actor: "admin", Time: time.Now().UTC()}
	if err := f.store.PutOverride(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) wantStatus(t *testing.T, path string, want int) []byte {
	t.Helper()
	resp, body := f.do(t, "GET", path)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d: %s", path, resp.StatusCode, want, body)
	}
	return body
}

// An image allowed by digest serves its blobs by relation: under the
// names that carry the image, whenever the allow was made (before the
// first pull too), known-bad blobs included; not under other names, and
// never over an operator's own override on the blob.
func TestImageAllowCoversItsBlobsByRelation(t *testing.T) {
	img := testregistry.MinerImage("scope")
	bad := digest.FromBytes(img.Layers[len(img.Layers)-1])
	other := digest.FromBytes(img.Layers[0])
	cases := []struct {
		name     string
		knownBad bool
		blob     storage.Action // the operator's own override on bad, if any
		repo     string         // the repository the layer is asked under
		want     int
	}{
		{name: "under the image's name", repo: "someone/tool", want: 200},
		{name: "under another name", repo: "zz/other", want: http.StatusForbidden},
		{name: "a deny on the blob stays a deny", blob: storage.Deny, repo: "someone/tool", want: http.StatusForbidden},
		{name: "known-bad layer of the image", knownBad: true, repo: "someone/tool", want: 200},
		{name: "known-bad layer under another name", knownBad: true, repo: "zz/other", want: http.StatusForbidden},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options, _ *scanner.Options) {
				if c.knownBad {
					o.KnownBad = digestList{bad, other}
				}
			})
			mdgst := f.hub.Push(t, "someone/tool", "1", img)
			f.hub.PushBlob(t, "zz/other", img.Layers[len(img.Layers)-1])
			f.hub.PushBlob(t, "zz/other", img.Layers[0])
			// Allowed before its first pull.
			f.override(t, mdgst.String(), storage.Allow)
			if c.blob != "" {
				f.override(t, bad.String(), c.blob)
			}
			f.wantStatus(t, "/v2/someone/tool/manifests/1", 200)
			body := f.wantStatus(t, "/v2/"+c.repo+"/blobs/"+bad.String(), c.want)
			if c.want == 200 && digest.FromBytes(body) != bad {
				t.Fatal("the allowed layer's bytes differ")
			}
			if c.knownBad {
				f.wantStatus(t, "/v2/"+c.repo+"/blobs/"+other.String(), c.want)
			}
			want := 1
			if c.blob != "" {
				want = 2
			}
			if list, _ := f.store.Overrides(context.Background()); len(list) != want {
				t.Fatalf("overrides after serving: %+v, want the operator's %d", list, want)
			}
		})
	}
}

// An operator's deny on a blob refuses every image that carries it, as
// the known-bad list does, with a message naming the deny.
func TestBlobDenyRefusesItsImages(t *testing.T) {
	f := newFixture(t)
	img := testregistry.CleanImage("bdeny")
	f.hub.Push(t, "bd/one", "1", img)
	f.hub.Push(t, "bd/two", "1", img)
	layer := digest.FromBytes(img.Layers[0])
	f.wantStatus(t, "/v2/bd/one/manifests/1", 200)
	f.override(t, layer.String(), storage.Deny)
	for _, repo := range []string{"bd/one", "bd/two"} {
		body := f.wantStatus(t, "/v2/"+repo+"/manifests/1", http.StatusForbidden)
		if _, msg := ociError(t, body); !strings.Contains(msg, "denied by operator admin") || !strings.Contains(msg, layer.String()) {
			t.Fatalf("%s: message %q does not name the operator's deny on the blob", repo, msg)
		}
	}
}

// A digest allow mends a manifest refused only because a deny on another
// repository reaches it (a re-push of it was pulled there); the deny on
// the name asked for still wins over it.
func TestDigestAllowMendsDenyCollateral(t *testing.T) {
	f := newFixture(t)
	img := testregistry.CleanImage("popm")
	mdgst := f.hub.Push(t, "library/popm", "1", img)
	f.hub.Push(t, "evil/popm", "1", img)
	f.wantStatus(t, "/v2/evil/popm/manifests/1", 200)
	f.override(t, "docker.io/evil/popm", storage.Deny)
	official := "/v2/library/popm/manifests/" + mdgst.String()
	f.wantStatus(t, official, http.StatusForbidden)

	f.override(t, mdgst.String(), storage.Allow)
	f.wantStatus(t, official, 200)
	f.wantStatus(t, "/v2/evil/popm/manifests/"+mdgst.String(), http.StatusForbidden)
	f.override(t, "docker.io/library/popm", storage.Deny)
	f.wantStatus(t, official, http.StatusForbidden)
}

// A rescan after new rules judges each stored blob as a bare request for
// it is judged: an operator's allow (on the blob, or on an image listing
// it) keeps it stored and raises no alert, and a blob another manifest
// names in a role it cannot be read in stays (it reads clean in its own).
func TestRescanDecidesAsTheGate(t *testing.T) {
	for _, subject := range []string{"image", "blob"} {
		t.Run("allowed "+subject, func(t *testing.T) {
			f := newFixture(t)
			f.newRules(t, "TestAllowedA", "ALLOWED-MARK")
			img := testregistry.Image{Layers: [][]byte{testregistry.Layer(testregistry.File{Path: "opt/tool", Data: []byte("ALLOWED-MARK")})}}
			mdgst := f.hub.Push(t, "vendor/tool", "1", img)
			layer := digest.FromBytes(img.Layers[0])
			f.wantStatus(t, "/v2/vendor/tool/manifests/1", http.StatusForbidden)
			if subject == "image" {
				f.override(t, mdgst.String(), storage.Allow)
			} else {
				f.override(t, mdgst.String(), storage.Allow)
				f.override(t, layer.String(), storage.Allow)
			}
			f.wantStatus(t, "/v2/vendor/tool/manifests/1", 200)
			f.wantStatus(t, "/v2/vendor/tool/blobs/"+layer.String(), 200)
			f.newRules(t, "TestAllowedB", "ALLOWED-MARK")
			f.wantRescanKeeps(t, layer)
		})
	}
	t.Run("allow removed", func(t *testing.T) {
		f := newFixture(t)
		f.newRules(t, "TestAllowedA", "ALLOWED-MARK")
		img := testregistry.Image{Layers: [][]byte{testregistry.Layer(testregistry.File{Path: "opt/tool", Data: []byte("ALLOWED-MARK")})}}
		mdgst := f.hub.Push(t, "vendor/tool", "1", img)
		layer := digest.FromBytes(img.Layers[0])
		f.override(t, mdgst.String(), storage.Allow)
		f.wantStatus(t, "/v2/vendor/tool/manifests/1", 200)
		f.wantStatus(t, "/v2/vendor/tool/blobs/"+layer.String(), 200)
		if err := f.store.DeleteOverride(context.Background(), mdgst.String()); err != nil {
			t.Fatal(err)
		}
		f.newRules(t, "TestAllowedB", "ALLOWED-MARK")
		rep, err := f.srv.gate.Rescan(context.Background())
		if err != nil || len(rep.Refused) != 0 {
			t.Fatalf("rescan: %+v %v", rep, err)
		}
		if _, err := f.blobs.Stat(context.Background(), layer); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("a blob no longer allowed is still stored: %v", err)
		}
		for _, ev := range f.srv.live.Recent(50) {
			if ev.Decision == verdict.RetroactiveBlock {
				t.Fatalf("the end of an allow was reported as a retroactive block: %s", ev.Reason)
			}
		}
	})
	t.Run("denied blob", func(t *testing.T) {
		f := newFixture(t)
		img := testregistry.CleanImage("denied")
		f.hub.Push(t, "vendor/denied", "1", img)
		layer := digest.FromBytes(img.Layers[0])
		f.wantStatus(t, "/v2/vendor/denied/manifests/1", 200)
		f.override(t, layer.String(), storage.Deny)
		f.newRules(t, "TestHarmless", "NOTHING-HAS-THIS")
		f.wantRescanKeeps(t, layer)
	})
	t.Run("role poisoning", func(t *testing.T) {
		f := newFixture(t)
		victim, config, layer := pushRoleSwap(t, f)
		f.wantStatus(t, "/v2/someone/poison/manifests/x", http.StatusForbidden)
		f.wantStatus(t, "/v2/library/victim/manifests/"+victim.String(), 200)
		f.newRules(t, "TestHarmless", "NOTHING-HAS-THIS")
		f.wantRescanKeeps(t, config, layer)
	})
}

// wantRescanKeeps rescans and fails unless the blobs are still stored and
// no retroactive block was reported.
func (f *fixture) wantRescanKeeps(t *testing.T, blobs ...digest.Digest) {
	t.Helper()
	rep, err := f.srv.gate.Rescan(context.Background())
	if err != nil || len(rep.Refused) != 0 || rep.Failed != 0 {
		t.Fatalf("rescan: %+v %v", rep, err)
	}
	for _, d := range blobs {
		if _, err := f.blobs.Stat(context.Background(), d); errors.Is(err, storage.ErrNotFound) {
			t.Errorf("rescan removed %s", d)
		}
	}
	for _, ev := range f.srv.live.Recent(50) {
		if ev.Decision == verdict.RetroactiveBlock {
			t.Fatalf("retroactive block reported: %s", ev.Reason)
		}
	}
}
