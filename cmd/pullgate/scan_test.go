package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/testregistry"
)

// runScan runs pullgate scan --json and decodes its report.
func runScan(t *testing.T, args ...string) (int, []scanReport, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(append([]string{"scan", "--json", "--workers", "2"}, args...), &out, &errOut)
	var reports []scanReport
	if code != exitError {
		if err := json.Unmarshal(out.Bytes(), &reports); err != nil {
			t.Fatalf("exit %d, output is not JSON: %v\n%s\n%s", code, err, out.String(), errOut.String())
		}
	}
	return code, reports, errOut.String()
}

func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestScanRootfs(t *testing.T) {
	script, bin := samples.Benign()
	clean := t.TempDir()
	writeTree(t, clean, map[string][]byte{"usr/local/bin/start.sh": script, "usr/bin/app": bin})
	if code, reports, stderr := runScan(t, clean); code != exitClean || reports[0].Decision != "clean" || reports[0].Blobs[0].Files != 2 {
		t.Fatalf("clean rootfs: exit %d %+v %s", code, reports, stderr)
	}

	bad := t.TempDir()
	writeTree(t, bad, map[string][]byte{"usr/bin/app": bin, "usr/bin/kworker": samples.XMRig()})
	code, reports, _ := runScan(t, bad)
	if code != exitRefused || reports[0].Decision != "blocked" {
		t.Fatalf("rootfs with a miner: exit %d, %+v", code, reports)
	}
	if f := reports[0].Blocking; len(f) == 0 || f[0].Path != "/usr/bin/kworker" || !strings.Contains(reports[0].Reason, "/usr/bin/kworker") {
		t.Errorf("blocking = %+v, reason %q", f, reports[0].Reason)
	}

	// The same decision in text form names the file and the rule.
	var out bytes.Buffer
	if code := run([]string{"scan", bad}, &out, &out); code != exitRefused || !strings.Contains(out.String(), "BLOCK file /usr/bin/kworker matched MinerXMRig") {
		t.Errorf("text report (exit %d):\n%s", code, out.String())
	}

	if code, _, stderr := runScan(t, filepath.Join(bad, "missing")); code != exitError || stderr == "" {
		t.Errorf("missing path: exit %d, stderr %q", code, stderr)
	}
}

// image is a synthetic image's blobs.
type testImage struct {
	config []byte
	layers [][]byte
}

func newTestImage(t *testing.T, cfg ocispec.ImageConfig, layers ...[]byte) testImage {
	t.Helper()
	b, err := testregistry.Image{Layers: layers, Config: ocispec.Image{Config: cfg}}.Build()
	if err != nil {
		t.Fatal(err)
	}
	return testImage{config: b.Config, layers: layers}
}

// dockerSave writes img as `docker save` would: manifest.json naming the
// config and layer files.
func dockerSave(t *testing.T, img testImage) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	cfgName := digest.FromBytes(img.config).Encoded() + ".json"
	add(cfgName, img.config)
	var layers []string
	for _, l := range img.layers {
		name := digest.FromBytes(l).Encoded() + "/layer.tar"
		add(name, l)
		layers = append(layers, name)
	}
	manifest, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{"example/app:1"}, "Layers": layers}})
	add("manifest.json", manifest)
	tw.Close()
	p := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ociLayout writes img as an OCI image layout folder.
func ociLayout(t *testing.T, img testImage) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{"oci-layout": []byte(`{"imageLayoutVersion": "1.0.0"}`)}
	blob := func(data []byte, mt string) ocispec.Descriptor {
		d := digest.FromBytes(data)
		files["blobs/sha256/"+d.Encoded()] = data
		return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(data))}
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: blob(img.config, ocispec.MediaTypeImageConfig)}
	m.SchemaVersion = 2
	for _, l := range img.layers {
		m.Layers = append(m.Layers, blob(l, ocispec.MediaTypeImageLayerGzip))
	}
	mb, _ := json.Marshal(m)
	md := blob(mb, ocispec.MediaTypeImageManifest)
	md.Annotations = map[string]string{"org.opencontainers.image.ref.name": "example/app:2"}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{md}}
	idx.SchemaVersion = 2
	files["index.json"], _ = json.Marshal(idx)
	writeTree(t, dir, files)
	return dir
}

func TestScanImageArchives(t *testing.T) {
	script, bin := samples.Benign()
	base := testregistry.Layer(testregistry.File{Path: "usr/bin/app", Mode: 0o755, Data: bin}, testregistry.File{Path: "start.sh", Mode: 0o755, Data: script})
	clean := newTestImage(t, ocispec.ImageConfig{Cmd: []string{"/start.sh"}}, base)
	minerCmd := newTestImage(t, ocispec.ImageConfig{Cmd: samples.MinerCmd()}, base)
	// Evidence split over layers and the config: a UPX-packed binary in
	// one layer, its wallet in the config's environment. Neither blocks
	// alone; the image does.
	packed := newTestImage(t, ocispec.ImageConfig{Entrypoint: []string{"/usr/bin/agent"}, Env: []string{"WALLET=" + samples.Wallet}},
		base, testregistry.LayerZstd(testregistry.File{Path: "usr/bin/agent", Mode: 0o755, Data: samples.UPX(samples.XMRig(), false)}))

	for _, format := range []struct {
		name  string
		write func(*testing.T, testImage) string
	}{{"docker save", dockerSave}, {"OCI layout", ociLayout}} {
		t.Run(format.name, func(t *testing.T) {
			code, reports, stderr := runScan(t, format.write(t, clean))
			if code != exitClean || len(reports) != 1 || reports[0].Decision != "clean" || len(reports[0].Blobs) != 2 {
				t.Fatalf("clean image: exit %d %+v %s", code, reports, stderr)
			}
			if !strings.HasPrefix(reports[0].Image, "example/app:") {
				t.Errorf("image name = %q", reports[0].Image)
			}
			code, reports, _ = runScan(t, format.write(t, minerCmd))
			if code != exitRefused || reports[0].Decision != "blocked" || !strings.Contains(reports[0].Reason, "image config") {
				t.Errorf("miner command line: exit %d %+v", code, reports)
			}
			code, reports, _ = runScan(t, format.write(t, packed))
			// The packer finding, the wallet, and PackerUnpackFailed: the
			// stand-in carries UPX's mark but no packed program to restore.
			if code != exitRefused || reports[0].Decision != "blocked" || len(reports[0].Blocking) != 3 {
				t.Errorf("packed binary with a wallet in the config: exit %d %+v", code, reports)
			}
			// Each blob alone only warns.
			for _, b := range reports[0].Blobs {
				for _, f := range b.Findings {
					if f.Severity == "high" {
						t.Errorf("blob %s has a high finding %+v", b.Name, f)
					}
				}
			}
		})
	}
}

func TestScanLayerAndKnownBad(t *testing.T) {
	_, bin := samples.Benign()
	layer := testregistry.Layer(testregistry.File{Path: "usr/bin/app", Mode: 0o755, Data: bin})
	p := filepath.Join(t.TempDir(), "layer.tar.gz")
	writeFile(t, p, string(layer))
	if code, reports, _ := runScan(t, p); code != exitClean || reports[0].Blobs[0].Digest != digest.FromBytes(layer).String() {
		t.Fatalf("clean layer: exit %d %+v", code, reports)
	}
	list := filepath.Join(t.TempDir(), "known-bad.txt")
	writeFile(t, list, "# test list\n"+digest.FromBytes(bin).String()+" test tool\n")
	code, reports, _ := runScan(t, "--known-bad", list, p)
	if code != exitRefused || reports[0].Blocking[0].Rule != "KnownBadFile" || reports[0].Blocking[0].Path != "/usr/bin/app" {
		t.Errorf("known-bad file: exit %d %+v", code, reports)
	}
	writeFile(t, list, digest.FromBytes(layer).String()+"\n")
	code, reports, _ = runScan(t, "--known-bad", list, p)
	if code != exitRefused || reports[0].Blocking[0].Rule != "KnownBadBlob" {
		t.Errorf("known-bad blob: exit %d %+v", code, reports)
	}
	// A layer the scanner cannot read is refused (exit 1), not an error.
	corrupt := filepath.Join(t.TempDir(), "corrupt.tar.gz")
	writeFile(t, corrupt, string(layer[:len(layer)/2]))
	if code, reports, _ := runScan(t, corrupt); code != exitRefused || reports[0].Decision != "error" {
		t.Errorf("corrupt layer: exit %d %+v", code, reports)
	}
	// A category action from the command line.
	if code, _, _ := runScan(t, "--action", "known-bad=warn", "--known-bad", list, p); code != exitClean {
		t.Errorf("--action known-bad=warn: exit %d", code)
	}
	if code, _, _ := runScan(t, "--action", "miner=maybe", p); code != exitError {
		t.Errorf("bad --action: exit %d", code)
	}
}

func TestScanReference(t *testing.T) {
	hub := testregistry.Start(t)
	script, bin := samples.Benign()
	hub.Push(t, "library/good", "1", testregistry.Image{Layers: [][]byte{
		testregistry.Layer(testregistry.File{Path: "usr/bin/app", Mode: 0o755, Data: bin}, testregistry.File{Path: "start.sh", Mode: 0o755, Data: script}),
	}})
	hub.Push(t, "someone/tool", "latest", testregistry.Image{Layers: [][]byte{
		testregistry.Layer(testregistry.File{Path: "usr/bin/app", Mode: 0o755, Data: bin}),
		testregistry.LayerZstd(testregistry.File{Path: "usr/bin/kworker", Mode: 0o755, Data: samples.XMRig()}),
	}, Format: testregistry.OCI})
	up := "--upstream=docker.io=" + hub.URL()
	// The stand-in's CDN listens on another loopback address.
	allow := "--upstream-allow=docker.io=127.0.0.0/8"

	code, reports, stderr := runScan(t, allow, up, "good:1")
	if code != exitClean || reports[0].Decision != "clean" || len(reports[0].Blobs) != 2 || !strings.HasPrefix(reports[0].Image, "docker.io/library/good@sha256:") {
		t.Fatalf("good:1: exit %d %+v %s", code, reports, stderr)
	}
	code, reports, _ = runScan(t, allow, up, "docker.io/someone/tool")
	if code != exitRefused || reports[0].Decision != "blocked" || reports[0].Blocking[0].Path != "/usr/bin/kworker" {
		t.Errorf("someone/tool: exit %d %+v", code, reports)
	}
	if code, _, stderr := runScan(t, allow, up, "missing/image:1"); code != exitError || !strings.Contains(stderr, "missing/image") {
		t.Errorf("missing image: exit %d, %s", code, stderr)
	}
	if code, _, stderr := runScan(t, allow, up, "ghcr.io/o/r:1"); code != exitError || !strings.Contains(stderr, "not configured") {
		t.Errorf("unconfigured registry: exit %d, %s", code, stderr)
	}
}

// With --config, scan uses what serve would: the config's upstreams with
// their credentials, its extra rules and its decision policy.
func TestScanReferenceWithServeConfig(t *testing.T) {
	hub := testregistry.Start(t, testregistry.WithCredentials("scanbot", "s3cret-registry-password"))
	hub.Push(t, "team/app", "1", testregistry.CleanImage("team build 42"))
	dir := t.TempDir()
	rules := filepath.Join(dir, "site.yar")
	writeFile(t, rules, `rule SiteBadBuild { meta: category = "miner" severity = "high" description = "site rule" strings: $a = "team build 42" condition: $a }`)
	cfg := filepath.Join(dir, "pullgate.yaml")
	writeFile(t, cfg, "upstreams:\n  docker.io:\n    url: "+hub.URL()+"\n    allow_networks: [127.0.0.0/8]\n    username: scanbot\n    password: s3cret-registry-password\nrules: ["+rules+"]\n")

	code, reports, stderr := runScan(t, "--config", cfg, "team/app:1")
	if code != exitRefused || len(reports) != 1 || reports[0].Blocking[0].Rule != "SiteBadBuild" {
		t.Fatalf("exit %d %+v %s", code, reports, stderr)
	}
	// The same rule set to warn by the config's decision: served, with a warning.
	writeFile(t, cfg, "upstreams:\n  docker.io:\n    url: "+hub.URL()+"\n    allow_networks: [127.0.0.0/8]\n    username: scanbot\n    password: s3cret-registry-password\nrules: ["+rules+"]\ndecision:\n  actions: {miner: warn}\n")
	code, reports, stderr = runScan(t, "--config", cfg, "team/app:1")
	if code != exitClean || len(reports[0].Warnings) == 0 {
		t.Fatalf("with miner: warn: exit %d %+v %s", code, reports, stderr)
	}
	if strings.Contains(stderr, "s3cret-registry-password") {
		t.Fatal("the registry password was printed")
	}
	// Without the credentials this registry refuses the pull: they were used.
	writeFile(t, cfg, "upstreams:\n  docker.io:\n    url: "+hub.URL()+"\n    allow_networks: [127.0.0.0/8]\n")
	if code, _, stderr := runScan(t, "--config", cfg, "team/app:1"); code != exitError {
		t.Fatalf("without credentials: exit %d %s", code, stderr)
	}
}
