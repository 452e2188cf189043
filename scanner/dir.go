package scanner

import (
	"archive/tar"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// DirLayer streams the regular files under dir as an uncompressed tar layer
// (paths relative to dir, modes and times kept), so that a root filesystem
// on disk is scanned exactly as a layer would be. With skipUnreadable, a
// file that cannot be read is left out (a corpus of real content); without
// it, the stream fails, so that a scan never passes over what it could not
// read.
func DirLayer(dir string, skipUnreadable bool) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		skip := func(err error) error {
			if skipUnreadable {
				return nil
			}
			return err
		}
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return skip(err)
			}
			if !d.Type().IsRegular() {
				return nil
			}
			f, err := os.Open(p)
			if err != nil {
				return skip(err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return skip(err)
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			hdr := &tar.Header{Name: filepath.ToSlash(rel), Mode: int64(fi.Mode().Perm()), Size: fi.Size(), Typeflag: tar.TypeReg, ModTime: fi.ModTime()}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			return err
		})
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}
