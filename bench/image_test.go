package bench

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// layerPlan is one layer of the benchmark image: the host directories it is
// cut from, walked in order, and the compressed size at which it stops.
type layerPlan struct {
	name   string
	dirs   []string
	target int64 // compressed bytes
}

// imagePlan is a ~60 MB (compressed) image cut from the host's own Debian 12
// root filesystem, in four layers of different sizes, the way a real image
// has a big base layer and smaller ones on top.
var imagePlan = []layerPlan{
	{"base", []string{"/etc", "/usr/lib/x86_64-linux-gnu"}, 29 << 20},
	{"bin", []string{"/usr/bin", "/usr/sbin"}, 15 << 20},
	{"runtime", []string{"/usr/share/perl", "/usr/share/perl5", "/usr/lib/python3.11", "/usr/lib/python3"}, 8 << 20},
	{"docs", []string{"/usr/share/doc"}, 3 << 20},
}

// maxFileBytes skips single files so big that one of them would overshoot a
// layer's target by itself.
const maxFileBytes = 8 << 20

// benchImage is the built image: gzip layers and their uncompressed tars.
type benchImage struct {
	dir    string   // where the layers are cached for this process
	layers [][]byte // gzip-compressed tar
	tars   [][]byte // the same, uncompressed
	files  []int    // regular files per layer
}

func (im *benchImage) compressed() int64 {
	var n int64
	for _, l := range im.layers {
		n += int64(len(l))
	}
	return n
}

func (im *benchImage) uncompressed() int64 {
	var n int64
	for _, t := range im.tars {
		n += int64(len(t))
	}
	return n
}

var (
	imageOnce sync.Once
	image     *benchImage
	imageErr  error
)

// loadImage builds the image once per process. The layers are kept in a
// temporary directory (PULLGATE_BENCH_IMAGE_DIR, if set, is used and kept,
// so repeated runs skip the build) and in memory.
func loadImage() (*benchImage, error) {
	imageOnce.Do(func() { image, imageErr = buildImage() })
	return image, imageErr
}

func buildImage() (*benchImage, error) {
	dir := os.Getenv("PULLGATE_BENCH_IMAGE_DIR")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "pullgate-bench-image-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	im := &benchImage{dir: dir}
	for i, p := range imagePlan {
		path := filepath.Join(dir, fmt.Sprintf("layer%d-%s.tar.gz", i, p.name))
		layer, err := os.ReadFile(path)
		if err != nil {
			var buf bytes.Buffer
			if err := writeLayer(&buf, p); err != nil {
				return nil, fmt.Errorf("build layer %s: %w", p.name, err)
			}
			layer = buf.Bytes()
			if err := os.WriteFile(path, layer, 0o644); err != nil {
				return nil, err
			}
		}
		raw, files, err := gunzipTar(layer)
		if err != nil {
			return nil, fmt.Errorf("read back layer %s: %w", path, err)
		}
		im.layers = append(im.layers, layer)
		im.tars = append(im.tars, raw)
		im.files = append(im.files, files)
	}
	return im, nil
}

// countWriter counts what the gzip writer has emitted so far.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeLayer writes p's directories as a gzip tar until its compressed size
// reaches p.target. Unreadable files and special files (devices, sockets,
// fifos) are skipped; symlinks are kept as symlinks.
func writeLayer(w io.Writer, p layerPlan) error {
	cw := &countWriter{w: w}
	zw := gzip.NewWriter(cw) // default level, as docker push uses
	tw := tar.NewWriter(zw)
	full := false
	for _, root := range p.dirs {
		if full {
			break
		}
		if _, err := os.Lstat(root); err != nil {
			continue
		}
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if d != nil && d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if cw.n >= p.target {
				full = true
				return fs.SkipAll
			}
			return addFile(tw, path, d)
		})
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func addFile(tw *tar.Writer, path string, d fs.DirEntry) error {
	info, err := d.Info()
	if err != nil {
		return nil
	}
	name := strings.TrimPrefix(path, "/")
	mode := info.Mode()
	switch {
	case mode.IsDir():
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return nil
		}
		hdr.Name = name + "/"
		return writeHeader(tw, hdr)
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, target)
		if err != nil {
			return nil
		}
		hdr.Name = name
		return writeHeader(tw, hdr)
	case mode.IsRegular():
		if info.Size() > maxFileBytes {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil || int64(len(data)) != info.Size() {
			return nil // unreadable, or changing under us
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return nil
		}
		hdr.Name = name
		if err := writeHeader(tw, hdr); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	default:
		return nil
	}
}

func writeHeader(tw *tar.Writer, hdr *tar.Header) error {
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "root", "root"
	hdr.Format = tar.FormatPAX
	hdr.AccessTime, hdr.ChangeTime = hdr.ModTime, hdr.ModTime
	return tw.WriteHeader(hdr)
}

// gunzipTar returns a layer's tar and its count of regular files.
func gunzipTar(layer []byte) ([]byte, int, error) {
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		return nil, 0, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, 0, err
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	files := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		if hdr.Typeflag == tar.TypeReg {
			files++
		}
	}
	return raw, files, nil
}

// describe is a one-paragraph account of the image for the summary.
func (im *benchImage) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "image: the host's Debian %s root filesystem, %d layers, %.1f MB compressed, %.1f MB uncompressed\n",
		debianVersion(), len(im.layers), mb(im.compressed()), mb(im.uncompressed()))
	for i, p := range imagePlan {
		fmt.Fprintf(&b, "  layer %d %-8s %6.1f MB gz %6.1f MB tar %6d files  from %s\n",
			i, p.name, mb(int64(len(im.layers[i]))), mb(int64(len(im.tars[i]))), im.files[i], strings.Join(p.dirs, " "))
	}
	return b.String()
}

func debianVersion() string {
	b, err := os.ReadFile("/etc/debian_version")
	if err != nil {
		return "(unknown)"
	}
	return strings.TrimSpace(string(b))
}

func mb(n int64) float64 { return float64(n) / 1e6 }
