package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// envMeasure, when "1", runs TestStandInClientRefusals: a minute or more per
// mode for dockerd alone, so it is not part of every run. envMeasureOut names
// a file the table is appended to.
const (
	envMeasure    = "PULLGATE_E2E_MEASURE_CLIENTS"
	envMeasureOut = "PULLGATE_E2E_MEASURE_OUT"
)

// clientRow is what one client did with one refusal.
type clientRow struct {
	client   string
	how      refusal
	sees     string        // the last line the user sees
	took     time.Duration // until the client gave up
	manifest []string      // its manifest requests
	layer    []string      // its requests for the refused layer
	fellBack string        // whether and where it went after the refusal
	left     string        // what image it was left with
}

// clientCase drives one client, configured one way, through s (which
// refuses) with origin standing in for the registry it falls back to.
type clientCase struct {
	name string
	run  func(t *testing.T, ctx context.Context, s *standIn, origin *testregistry.Registry) clientRow
}

// TestStandInClientRefusals records, for each real client and each way of
// refusing, what the user sees, how long the client tries, with which
// Range headers, whether it falls back, and whether an image is left. It
// asserts only what must hold whatever the mode: no client is left with the
// refused image from the stand-in.
func TestStandInClientRefusals(t *testing.T) {
	if os.Getenv(envMeasure) != "1" {
		t.Skipf("set %s=1 to measure the clients (several minutes)", envMeasure)
	}
	img := bigLayerImage("standin", 1<<20)
	var rows []clientRow
	for _, how := range []refusal{refuseManifest, cutLayer, stillScanning, scanOutlastsHold} {
		for _, c := range standInCases() {
			t.Run(fmt.Sprintf("%s/%d", c.name, how), func(t *testing.T) {
				origin := testregistry.Start(t)
				origin.Push(t, "someone/miner", "1", img)
				s := startStandIn(t, img, how)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				start := time.Now()
				row := c.run(t, ctx, s, origin)
				row.client, row.how, row.manifest, row.layer = c.name, how, s.manifestRequests(), s.refusedLayerRequests()
				if row.took == 0 {
					row.took = time.Since(start)
				}
				t.Logf("%s, %s: took %s, sees %q, manifest requests %q, layer requests %q, fallback %s, left %s", row.client, how, row.took.Round(100*time.Millisecond), row.sees, row.manifest, row.layer, row.fellBack, row.left)
				t.Logf("user agents: %q", s.agents())
				rows = append(rows, row)
			})
		}
	}
	table := clientTable(rows)
	t.Log("\n" + table)
	if out := os.Getenv(envMeasureOut); out != "" {
		f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(table); err != nil {
			t.Fatal(err)
		}
	}
}

func clientTable(rows []clientRow) string {
	var b strings.Builder
	b.WriteString("| client | stand-in answers | user sees | ended after | manifest requests | big-layer requests | fallback | image left |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | `%s` | %.1f s | %s | %s | %s | %s |\n", r.client, r.how, strings.ReplaceAll(r.sees, "|", "\\|"),
			r.took.Seconds(), strings.Join(r.manifest, "<br>"), strings.Join(r.layer, "<br>"), r.fellBack, r.left)
	}
	return b.String()
}

// lastLine is the last non-empty line of a client's output.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// originTouched says whether the client asked origin for anything.
func originTouched(origin *testregistry.Registry) string {
	if n := len(origin.Requests()); n > 0 {
		return fmt.Sprintf("yes: %d requests to the origin", n)
	}
	return "no"
}

func standInCases() []clientCase {
	return []clientCase{
		{"dockerd registry-mirrors", dockerdMirrorCase},
		{"dockerd explicit host", dockerdExplicitCase},
		{"ctr hosts.toml fallback", func(t *testing.T, ctx context.Context, s *standIn, o *testregistry.Registry) clientRow {
			return ctrCase(t, ctx, s, o, true)
		}},
		{"ctr hosts.toml enforce", func(t *testing.T, ctx context.Context, s *standIn, o *testregistry.Registry) clientRow {
			return ctrCase(t, ctx, s, o, false)
		}},
		{"podman no-fallback", func(t *testing.T, ctx context.Context, s *standIn, o *testregistry.Registry) clientRow {
			return podmanCase(t, ctx, s, o, false)
		}},
		{"podman mirror", func(t *testing.T, ctx context.Context, s *standIn, o *testregistry.Registry) clientRow {
			return podmanCase(t, ctx, s, o, true)
		}},
		{"skopeo copy no-fallback", func(t *testing.T, ctx context.Context, s *standIn, o *testregistry.Registry) clientRow {
			return skopeoCase(t, ctx, s, o, false)
		}},
		{"skopeo copy mirror", func(t *testing.T, ctx context.Context, s *standIn, o *testregistry.Registry) clientRow {
			return skopeoCase(t, ctx, s, o, true)
		}},
	}
}

// dockerdMirrorCase: dockerd falls back to registry-1.docker.io by
// itself, which is unreachable here; its log shows whether it tried.
func dockerdMirrorCase(t *testing.T, ctx context.Context, s *standIn, _ *testregistry.Registry) clientRow {
	d := SharedDockerd(t, DockerdOptions{Mirrors: []string{s.URL()}})
	start := time.Now()
	out, err := d.Pull(ctx, "someone/miner:1")
	row := clientRow{took: time.Since(start), sees: lastLine(out), fellBack: "no", left: "none"}
	if err == nil && s.refuses() {
		t.Errorf("docker pull succeeded:\n%s", out)
	}
	if strings.Contains(out+d.Log(), "registry-1.docker.io") {
		row.fellBack = "yes: to registry-1.docker.io"
	}
	t.Logf("dockerd log:\n%s", filterLines(d.Log(), "Attempting next endpoint", "retrying", "Download failed", "denied", "registry-1"))
	if d.HasImage("someone/miner:1") {
		row.left = "the image"
		if s.refuses() {
			t.Error("dockerd has the refused image")
		}
	}
	return row
}

func dockerdExplicitCase(t *testing.T, ctx context.Context, s *standIn, _ *testregistry.Registry) clientRow {
	d := SharedDockerd(t, DockerdOptions{Insecure: []string{s.Addr()}})
	ref := s.Addr() + "/someone/miner:1"
	start := time.Now()
	out, err := d.Pull(ctx, ref)
	row := clientRow{took: time.Since(start), sees: lastLine(out), fellBack: "no (none configured)", left: "none"}
	if err == nil && s.refuses() {
		t.Errorf("docker pull succeeded:\n%s", out)
	}
	t.Logf("dockerd log:\n%s", filterLines(d.Log(), "Attempting next endpoint", "retrying", "Download failed", "denied"))
	if d.HasImage(ref) {
		row.left = "the image"
		if s.refuses() {
			t.Error("dockerd has the refused image")
		}
	}
	return row
}

// filterLines keeps the lines of s that contain any of parts.
func filterLines(s string, parts ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, p := range parts {
			if strings.Contains(l, p) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// ctrCase pulls with a hosts.toml whose server is origin (fallback) or the
// stand-in itself (enforce).
func ctrCase(t *testing.T, ctx context.Context, s *standIn, origin *testregistry.Registry, fallback bool) clientRow {
	c := StartContainerd(t)
	server := "http://" + s.Addr()
	if fallback {
		server = origin.URL()
	}
	dir := filepath.Join(t.TempDir(), "hosts")
	body := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", server, "http://"+s.Addr())
	if err := os.MkdirAll(filepath.Join(dir, "docker.io"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "docker.io", "hosts.toml"), body)
	start := time.Now()
	out, err := c.Pull(ctx, dir, "docker.io/someone/miner:1")
	row := clientRow{took: time.Since(start), sees: lastLine(out), fellBack: originTouched(origin), left: "none"}
	if err != nil {
		row.sees = lastLine(err.Error())
	}
	images, lerr := c.Ctr(ctx, "images", "ls", "-q")
	if lerr != nil {
		t.Fatal(lerr)
	}
	if strings.Contains(images, "someone/miner") {
		row.left = "the image"
		if !fallback && s.refuses() {
			t.Errorf("containerd has the refused image without a fallback:\n%s", images)
		}
	}
	return row
}

// containersConf is a registries.conf for the stand-in: docker.io only
// through it, or through it with origin behind it as the registry itself.
func containersConf(t *testing.T, s *standIn, origin *testregistry.Registry, mirror bool) string {
	if !mirror {
		return writeTemp(t, "registries.conf", fmt.Sprintf("[[registry]]\nprefix = \"docker.io\"\nlocation = %q\ninsecure = true\n", s.Addr()))
	}
	return writeTemp(t, "registries.conf", fmt.Sprintf("[[registry]]\nprefix = \"docker.io\"\nlocation = %q\ninsecure = true\n\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n", origin.Host(), s.Addr()))
}

func podmanCase(t *testing.T, ctx context.Context, s *standIn, origin *testregistry.Registry, mirror bool) clientRow {
	conf := containersConf(t, s, origin, mirror)
	p := newPodman(t, conf)
	start := time.Now()
	out, err := p.run(ctx, "pull", "docker.io/someone/miner:1")
	row := clientRow{took: time.Since(start), sees: lastLine(out), fellBack: originTouched(origin), left: "none"}
	if err == nil && !mirror && s.refuses() {
		t.Errorf("podman pull succeeded:\n%s", out)
	}
	images, _ := p.run(ctx, "images", "--format", "{{.Repository}}:{{.Tag}}")
	if strings.Contains(images, "someone/miner") {
		row.left = "the image"
		if !mirror && s.refuses() {
			t.Errorf("podman has the refused image without a fallback:\n%s", images)
		}
	}
	return row
}

func skopeoCase(t *testing.T, ctx context.Context, s *standIn, origin *testregistry.Registry, mirror bool) clientRow {
	conf := containersConf(t, s, origin, mirror)
	layout := filepath.Join(t.TempDir(), "layout")
	start := time.Now()
	out, err := skopeo(ctx, conf, "copy", "docker://docker.io/someone/miner:1", "oci:"+layout+":x")
	row := clientRow{took: time.Since(start), sees: lastLine(out), fellBack: originTouched(origin), left: "none"}
	if err == nil && !mirror && s.refuses() {
		t.Errorf("skopeo copy succeeded:\n%s", out)
	}
	// skopeo converts the manifest to OCI, so the layout names another
	// digest: any manifest in its index is the image.
	var idx struct{ Manifests []json.RawMessage }
	if b, err := os.ReadFile(filepath.Join(layout, "index.json")); err == nil && json.Unmarshal(b, &idx) == nil && len(idx.Manifests) > 0 {
		row.left = "the image (OCI layout)"
	} else if _, err := os.Stat(layout); err == nil {
		row.left = "a layout without the image"
	}
	return row
}

// podman runs podman with its own store, vfs, and a registries.conf.
type podman struct {
	dir, conf string
}

func newPodman(t *testing.T, conf string) *podman {
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("podman is required (apt-get install podman): %v", err)
	}
	dir, err := os.MkdirTemp("/tmp", "pgp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unmountUnder(dir); os.RemoveAll(dir) })
	return &podman{dir: dir, conf: conf}
}

func (p *podman) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "podman", append([]string{
		"--root", filepath.Join(p.dir, "root"), "--runroot", filepath.Join(p.dir, "run"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
	}, args...)...)
	cmd.Env = append(withoutProxyEnv(os.Environ()), "CONTAINERS_REGISTRIES_CONF="+p.conf, "XDG_RUNTIME_DIR="+filepath.Join(p.dir, "xdg"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}
