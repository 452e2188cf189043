package bench

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types as Docker Hub serves them.
const (
	mediaManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaConfig   = "application/vnd.docker.container.image.v1+json"
	mediaLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// blobFile is one layer of a fileImage, kept on disk so that images far
// larger than memory can be served.
type blobFile struct {
	Path     string        `json:"path"`
	Digest   digest.Digest `json:"digest"`
	Size     int64         `json:"size"`
	DiffID   digest.Digest `json:"diff_id"`
	Unpacked int64         `json:"unpacked"`
}

// fileImage is an image whose layers are files: what the comparison's
// upstream serves, under repo:tag.
type fileImage struct {
	name     string // small, large, huge
	tag      string
	layers   []blobFile
	config   []byte
	manifest []byte
}

func (im *fileImage) compressed() int64 {
	n := int64(len(im.config))
	for _, l := range im.layers {
		n += l.Size
	}
	return n
}

func (im *fileImage) unpacked() int64 {
	var n int64
	for _, l := range im.layers {
		n += l.Unpacked
	}
	return n
}

func (im *fileImage) manifestDigest() digest.Digest { return digest.FromBytes(im.manifest) }

// seal builds the image's config and manifest from its layers. Both are
// deterministic: the same layers give the same digests.
func (im *fileImage) seal() error {
	cfg := ocispec.Image{
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		Config:   ocispec.ImageConfig{Cmd: []string{"bash"}, Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	m := ocispec.Manifest{MediaType: mediaManifest}
	m.SchemaVersion = 2
	for _, l := range im.layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mediaLayer, Digest: l.Digest, Size: l.Size})
	}
	var err error
	if im.config, err = json.Marshal(cfg); err != nil {
		return fmt.Errorf("encode the config of image %s: %w", im.name, err)
	}
	m.Config = ocispec.Descriptor{MediaType: mediaConfig, Digest: digest.FromBytes(im.config), Size: int64(len(im.config))}
	if im.manifest, err = json.Marshal(m); err != nil {
		return fmt.Errorf("encode the manifest of image %s: %w", im.name, err)
	}
	return nil
}

// smallFileImage is today's benchmark image (image_test.go) as files: the
// layers already cached in its directory.
func smallFileImage(im *benchImage) (*fileImage, error) {
	fi := &fileImage{name: "small", tag: tag}
	for i, p := range imagePlan {
		fi.layers = append(fi.layers, blobFile{
			Path:     filepath.Join(im.dir, fmt.Sprintf("layer%d-%s.tar.gz", i, p.name)),
			Digest:   digest.FromBytes(im.layers[i]),
			Size:     int64(len(im.layers[i])),
			DiffID:   digest.FromBytes(im.tars[i]),
			Unpacked: int64(len(im.tars[i])),
		})
	}
	return fi, fi.seal()
}

// cachedImage loads the image recorded in dir/meta.json, or builds its
// layers with build (each written to a path it is given) and records them.
// A cached layer is hashed again on load, so a changed file is rebuilt
// rather than served under a stale digest.
func cachedImage(dir, name, tag string, n int, build func(i int, w io.Writer) error) (*fileImage, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create the cache folder of image %s: %w", name, err)
	}
	meta := filepath.Join(dir, "meta.json")
	fi := &fileImage{name: name, tag: tag}
	if raw, err := os.ReadFile(meta); err == nil && json.Unmarshal(raw, &fi.layers) == nil && len(fi.layers) == n && layersIntact(fi.layers) {
		return fi, fi.seal()
	}
	fi.layers = nil
	for i := range n {
		path := filepath.Join(dir, fmt.Sprintf("layer%d.tar.gz", i))
		if err := writeFileAtomic(path, func(w io.Writer) error { return build(i, w) }); err != nil {
			return nil, fmt.Errorf("build layer %d of image %s: %w", i, name, err)
		}
		l, err := describeLayer(path)
		if err != nil {
			return nil, fmt.Errorf("read back layer %d of image %s: %w", i, name, err)
		}
		fi.layers = append(fi.layers, l)
	}
	raw, err := json.MarshalIndent(fi.layers, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(meta, func(w io.Writer) error { _, err := w.Write(raw); return err }); err != nil {
		return nil, fmt.Errorf("record image %s: %w", name, err)
	}
	return fi, fi.seal()
}

// writeFileAtomic writes path through a temporary file renamed into place,
// so that an interrupted build leaves no half-written layer to reuse.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// describeLayer hashes a gzip layer file and its uncompressed tar.
func describeLayer(path string) (blobFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return blobFile{}, err
	}
	defer f.Close()
	blobHash := sha256.New()
	size, err := io.Copy(blobHash, f)
	if err != nil {
		return blobFile{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return blobFile{}, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		return blobFile{}, err
	}
	tarHash := sha256.New()
	unpacked, err := io.Copy(tarHash, zr)
	if err != nil {
		return blobFile{}, err
	}
	return blobFile{
		Path: path, Size: size, Unpacked: unpacked,
		Digest: digest.NewDigest(digest.SHA256, blobHash),
		DiffID: digest.NewDigest(digest.SHA256, tarHash),
	}, nil
}

// layersIntact reports whether every recorded layer is still on disk with
// its recorded digest.
func layersIntact(layers []blobFile) bool {
	for _, l := range layers {
		f, err := os.Open(l.Path)
		if err != nil {
			return false
		}
		v := l.Digest.Verifier()
		n, err := io.Copy(v, f)
		f.Close()
		if err != nil || n != l.Size || !v.Verified() {
			return false
		}
	}
	return true
}

// cacheDir is where built images are kept between runs:
// $PULLGATE_BENCH_CACHE, or the repository's .cache/bench.
func cacheDir() string {
	if d := os.Getenv("PULLGATE_BENCH_CACHE"); d != "" {
		return d
	}
	abs, err := filepath.Abs(filepath.Join("..", ".cache", "bench"))
	if err != nil {
		return filepath.Join("..", ".cache", "bench")
	}
	return abs
}

// largePlan is an image of about 400 MB compressed and 1.2 GB unpacked,
// cut from this machine's /usr in two layers, as the issue measured.
var largePlan = []layerPlan{
	{"lib", []string{"/usr/lib"}, 250 << 20},
	{"share", []string{"/usr/bin", "/usr/sbin", "/usr/libexec", "/usr/share"}, 150 << 20},
}

// largeFileImage builds (once, cached) the large image.
func largeFileImage() (*fileImage, error) {
	return cachedImage(filepath.Join(cacheDir(), "large"), "large", "large", len(largePlan), func(i int, w io.Writer) error {
		return writeLayer(w, largePlan[i])
	})
}
