package testregistry

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// skopeo runs the real skopeo against the test registry, isolated from the
// user's credentials.
func skopeo(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	bin, err := exec.LookPath("skopeo")
	if err != nil {
		t.Fatalf("skopeo is required for this test (apt-get install skopeo): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_RUNTIME_DIR="+home, "REGISTRY_AUTH_FILE="+filepath.Join(home, "auth.json"))
	return cmd.CombinedOutput()
}

func TestSkopeo(t *testing.T) {
	for _, format := range []Format{Docker, OCI} {
		r := Start(t, WithCredentials("bob", "pw"))
		img := Image{Format: format, Layers: [][]byte{
			Layer(File{Path: "bin/hello", Mode: 0o755, Data: []byte("#!/bin/sh\necho hi\n")}),
			LayerTar(File{Path: "etc/hosts.extra", Data: []byte("127.0.0.1 x\n")}),
		}}
		mdgst := r.Push(t, "library/x", "tag", img)
		ref := "docker://" + r.Host() + "/library/x:tag"

		if out, err := skopeo(t, "inspect", "--tls-verify=false", "--no-creds", ref); err == nil {
			t.Errorf("anonymous inspect on a registry that requires credentials succeeded:\n%s", out)
		}
		out, err := skopeo(t, "inspect", "--tls-verify=false", "--creds", "bob:pw", ref)
		if err != nil {
			t.Fatalf("skopeo inspect: %v\n%s", err, out)
		}
		var info struct {
			Digest       digest.Digest
			Architecture string
			Os           string
			Layers       []digest.Digest
		}
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatalf("skopeo inspect output: %v\n%s", err, out)
		}
		if info.Digest != mdgst || info.Architecture != "amd64" || info.Os != "linux" || len(info.Layers) != 2 {
			t.Errorf("skopeo inspect = %+v, want digest %s", info, mdgst)
		}

		dir := t.TempDir()
		out, err = skopeo(t, "copy", "--insecure-policy", "--src-tls-verify=false", "--src-creds", "bob:pw", ref, "dir:"+dir)
		if err != nil {
			t.Fatalf("skopeo copy: %v\n%s", err, out)
		}
		for _, l := range img.Layers {
			d := digest.FromBytes(l)
			if got, err := os.ReadFile(filepath.Join(dir, d.Encoded())); err != nil || digest.FromBytes(got) != d {
				t.Errorf("copied layer %s: %v", d, err)
			}
			if r.CDNGets(d) == 0 || r.CDNAuthorized(d) != 0 {
				t.Errorf("layer %s: %d CDN GETs, %d with Authorization; want >0 and 0", d, r.CDNGets(d), r.CDNAuthorized(d))
			}
		}
	}
}

func TestSkopeoAnonymous(t *testing.T) {
	r := Start(t)
	mdgst := r.Push(t, "library/anon", "1", tinyImage("anon"))
	out, err := skopeo(t, "inspect", "--tls-verify=false", "--no-creds", "docker://"+r.Host()+"/library/anon:1")
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	var info struct{ Digest digest.Digest }
	if err := json.Unmarshal(out, &info); err != nil || info.Digest != mdgst {
		t.Fatalf("skopeo inspect digest = %s (%v), want %s", info.Digest, err, mdgst)
	}
}
