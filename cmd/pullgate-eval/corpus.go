package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/scanner"
)

// positives packs every synthetic case as a layer in each encoding.
func positives(sets ...[]samples.Case) []image {
	var out []image
	for _, c := range slices.Concat(sets...) {
		for _, enc := range encodings {
			out = append(out, caseImage(c, enc, true))
		}
	}
	return out
}

// nearMisses are synthetic negatives: weak indicators in benign places.
func nearMisses(sets ...[]samples.Case) []image {
	var out []image
	for _, c := range slices.Concat(sets...) {
		out = append(out, caseImage(c, encodings[1], false))
	}
	return out
}

var encodings = []struct {
	name string
	fn   func([]byte) []byte
}{
	{"tar", func(b []byte) []byte { return b }},
	{"gzip", gzipBytes},
	{"zstd", zstdBytes},
}

func caseImage(c samples.Case, enc struct {
	name string
	fn   func([]byte) []byte
}, positive bool) image {
	img := image{name: "synthetic/" + c.Name + "." + enc.name, positive: positive, kind: c.Family, config: c.Config, want: c.Rules}
	if !positive {
		img.name = "near-miss/" + c.Name
	}
	if len(c.Files) > 0 {
		blob := enc.fn(layerTar(c.Files))
		img.layer = func() (io.Reader, error) { return bytes.NewReader(blob), nil }
		for _, f := range c.Files {
			img.files = append(img.files, f.Path)
		}
	}
	return img
}

func layerTar(files []samples.File) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(f.Path, "/"), Mode: f.Mode, Size: int64(len(f.Data)), Typeflag: tar.TypeReg}); err != nil {
			panic(err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			panic(err)
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func zstdBytes(b []byte) []byte {
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		panic(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// prepareNegatives makes sure the Debian root filesystem and packages are
// in the cache and returns every negative image.
func prepareNegatives(cache, hostUsr, mirror string) ([]image, error) {
	var out []image
	if hostUsr != "" {
		out = append(out, dirImage("host"+hostUsr, "host", hostUsr))
	}
	rootfs := filepath.Join(cache, "rootfs")
	if _, err := os.Stat(filepath.Join(rootfs, "etc/os-release")); err != nil {
		fmt.Fprintln(os.Stderr, "debootstrap bookworm into", rootfs)
		tmp := rootfs + ".tmp"
		os.RemoveAll(tmp)
		if err := command("debootstrap", "bookworm", tmp, mirror); err != nil {
			return nil, fmt.Errorf("debootstrap (make deps installs it; needs root): %w", err)
		}
		// A rootfs left incomplete (no os-release) is replaced whole.
		if err := os.RemoveAll(rootfs); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, rootfs); err != nil {
			return nil, err
		}
	}
	out = append(out, dirImage("debian-bookworm-rootfs", "debootstrap", rootfs))

	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return nil, err
	}
	for _, pkg := range nearLinePackages {
		matches, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
		if len(matches) == 0 {
			cmd := exec.Command("apt-get", "download", pkg)
			cmd.Dir = debs
			cmd.Stderr = os.Stderr
			if err := cmd.Run(); err != nil {
				return nil, fmt.Errorf("apt-get download %s: %w", pkg, err)
			}
			matches, _ = filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
			if len(matches) == 0 {
				return nil, fmt.Errorf("apt-get download %s left no .deb in %s", pkg, debs)
			}
		}
		dir := filepath.Join(cache, "pkgs", pkg)
		if _, err := os.Stat(dir); err != nil {
			tmp := dir + ".tmp"
			os.RemoveAll(tmp)
			if err := os.MkdirAll(tmp, 0o755); err != nil {
				return nil, err
			}
			if err := command("dpkg-deb", "-x", matches[len(matches)-1], tmp); err != nil {
				return nil, err
			}
			if err := os.Rename(tmp, dir); err != nil {
				return nil, err
			}
		}
		out = append(out, dirImage("debian-pkg/"+pkg, "apt-get download", dir))
	}
	return out, nil
}

func command(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// dirImage is a negative image whose layer is a folder, streamed as a tar
// while it is scanned so the real walker runs over it.
func dirImage(name, kind, dir string) image {
	return image{name: name, kind: kind, layer: func() (io.Reader, error) {
		if _, err := os.Stat(dir); err != nil {
			return nil, err
		}
		return scanner.DirLayer(dir, true), nil
	}}
}
