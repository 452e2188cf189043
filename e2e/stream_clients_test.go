package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// The real clients the streaming tests drive, each set up to reach
// pullgate through a tap, with the snippets shipped in configs/.

// puller is one configured client.
type puller interface {
	// Pull pulls docker.io/<name> (name as "library/x:1") and returns what
	// the user sees.
	Pull(ctx context.Context, name string) (string, error)
	// Has reports whether the client now holds the image under name, and
	// with which manifest digest ("" when it cannot tell).
	Has(ctx context.Context, name string) (bool, digest.Digest)
	// Log is what the client logged besides its output (dockerd's log).
	Log() string
}

// clientSetup configures one client against addr (pullgate, or a tap in
// front of it); origin (host:port) stands in for the registry itself where
// the client's configuration falls back to it.
type clientSetup struct {
	name  string
	setup func(t *testing.T, addr, origin string) puller
}

func dockerMirror(t *testing.T, addr, _ string) puller {
	return &dockerPuller{d: SharedDockerd(t, DockerdOptions{Mirrors: []string{"http://" + addr}})}
}

func dockerExplicit(t *testing.T, addr, _ string) puller {
	return &dockerPuller{d: SharedDockerd(t, DockerdOptions{Insecure: []string{addr}}), prefix: addr + "/"}
}

func ctrEnforce(t *testing.T, addr, _ string) puller {
	return &ctrPuller{c: StartContainerd(t), hosts: hostsDir(t, "enforce", addr, "docker.io")}
}

// ctrFallbackToOrigin is the fallback snippet with origin as the registry
// it falls back to, so the suite can see the fallback happen.
func ctrFallbackToOrigin(t *testing.T, addr, origin string) puller {
	dir := hostsDir(t, "fallback", addr, "docker.io")
	path := filepath.Join(dir, "docker.io", "hosts.toml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, path, replaceOnce(t, string(b), `server = "https://registry-1.docker.io"`, `server = "http://`+origin+`"`))
	return &ctrPuller{c: StartContainerd(t), hosts: dir}
}

func podmanNoFallback(t *testing.T, addr, _ string) puller {
	return &podmanPuller{p: newPodman(t, writeTemp(t, "registries.conf", configSnippet(t, "registries.conf.no-fallback", addr)))}
}

// replaceOnce replaces old in s, which must hold it: a snippet that no
// longer names the registry would leave the test falling back elsewhere.
func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if strings.Count(s, old) != 1 {
		t.Fatalf("the snippet does not name %q once:\n%s", old, s)
	}
	return strings.Replace(s, old, new, 1)
}

// mirrorToOrigin is the mirror registries.conf with origin as the
// registry it falls back to.
func mirrorToOrigin(t *testing.T, addr, origin string) string {
	conf := replaceOnce(t, configSnippet(t, "registries.conf", addr), `location = "registry-1.docker.io"`, `location = "`+origin+`"`+"\ninsecure = true")
	return writeTemp(t, "registries.conf", conf)
}

func podmanMirrorToOrigin(t *testing.T, addr, origin string) puller {
	return &podmanPuller{p: newPodman(t, mirrorToOrigin(t, addr, origin))}
}

func skopeoMirrorToOrigin(t *testing.T, addr, origin string) puller {
	return &skopeoPuller{conf: mirrorToOrigin(t, addr, origin), dir: t.TempDir()}
}

func skopeoNoFallback(t *testing.T, addr, _ string) puller {
	return &skopeoPuller{conf: writeTemp(t, "registries.conf", configSnippet(t, "registries.conf.no-fallback", addr)), dir: t.TempDir()}
}

type dockerPuller struct {
	d      *Dockerd
	prefix string // "" through registry-mirrors, "host:port/" by explicit host
}

func (p *dockerPuller) ref(name string) string {
	if p.prefix == "" {
		return strings.TrimPrefix(name, "library/")
	}
	return p.prefix + name
}

func (p *dockerPuller) Pull(ctx context.Context, name string) (string, error) {
	return p.d.Pull(ctx, p.ref(name))
}

func (p *dockerPuller) Has(_ context.Context, name string) (bool, digest.Digest) {
	ref := p.ref(name)
	digests, err := p.d.RepoDigests(ref)
	if err != nil {
		return false, ""
	}
	repo := ref[:strings.LastIndex(ref, ":")] // every name here has a tag
	for _, rd := range digests {
		if r, d, ok := strings.Cut(rd, "@"); ok && r == repo {
			return true, digest.Digest(d)
		}
	}
	return true, ""
}

func (p *dockerPuller) Log() string { return p.d.Log() }

type ctrPuller struct {
	c     *Containerd
	hosts string
}

func (p *ctrPuller) Pull(ctx context.Context, name string) (string, error) {
	out, err := p.c.Pull(ctx, p.hosts, "docker.io/"+name)
	if err != nil {
		// Ctr's error carries the output: keep what the user saw.
		return err.Error(), err
	}
	return out, nil
}

func (p *ctrPuller) Has(ctx context.Context, name string) (bool, digest.Digest) {
	out, err := p.c.Ctr(ctx, "images", "ls")
	if err != nil {
		return false, ""
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "docker.io/"+name {
			return true, digest.Digest(f[2])
		}
	}
	return false, ""
}

func (p *ctrPuller) Log() string { return "" }

type podmanPuller struct{ p *podman }

func (p *podmanPuller) Pull(ctx context.Context, name string) (string, error) {
	return p.p.run(ctx, "pull", "docker.io/"+name)
}

func (p *podmanPuller) Has(ctx context.Context, name string) (bool, digest.Digest) {
	out, err := p.p.run(ctx, "image", "inspect", "--format", "{{.Digest}}", "docker.io/"+name)
	if err != nil {
		return false, ""
	}
	return true, digest.Digest(strings.TrimSpace(out))
}

func (p *podmanPuller) Log() string { return "" }

// skopeoPuller copies into a dir: layout, which keeps the manifest as
// served (an oci: layout would convert it and change its digest).
type skopeoPuller struct{ conf, dir string }

func (p *skopeoPuller) dest(name string) string {
	return filepath.Join(p.dir, strings.NewReplacer("/", "_", ":", "_").Replace(name))
}

func (p *skopeoPuller) Pull(ctx context.Context, name string) (string, error) {
	return skopeo(ctx, p.conf, "copy", "docker://docker.io/"+name, "dir:"+p.dest(name))
}

func (p *skopeoPuller) Has(_ context.Context, name string) (bool, digest.Digest) {
	// A copy that failed may leave blobs, never the manifest: it is
	// written last.
	b, err := os.ReadFile(filepath.Join(p.dest(name), "manifest.json"))
	if err != nil {
		return false, ""
	}
	return true, digest.FromBytes(b)
}

func (p *skopeoPuller) Log() string { return "" }
