package scanner

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"path"
	"sort"
	"strings"
)

// Extended attributes. A layer's entries may carry extended attributes as
// PAX records, and clients write them onto what they unpack (moby and
// containerd write every SCHILY.xattr record; libarchive-based tools
// read LIBARCHIVE.xattr records too). An attribute's value is bytes on the
// host that a loader in the container can read back (getfattr, os.getxattr)
// and run, so each value is scanned as a file of its own, named for the
// entry and the attribute: "/usr/bin/x (xattr user.payload)".

const (
	paxSchilyXattr     = "SCHILY.xattr."
	paxLibarchiveXattr = "LIBARCHIVE.xattr." // name URL-encoded, value base64
)

// scanXattrs scans the extended attributes of the layer entry hdr.
func (w *walker) scanXattrs(hdr *tar.Header) error {
	if len(hdr.PAXRecords) == 0 {
		return nil
	}
	keys := make([]string, 0, len(hdr.PAXRecords))
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, paxSchilyXattr) || strings.HasPrefix(k, paxLibarchiveXattr) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys) // findings in the same order on every scan
	name := cleanPath(hdr.Name)
	base := path.Base(name)
	for _, k := range keys {
		attr, value := strings.TrimPrefix(k, paxSchilyXattr), []byte(hdr.PAXRecords[k])
		if rest, ok := strings.CutPrefix(k, paxLibarchiveXattr); ok {
			attr = rest
			// A value that is no base64 is scanned as it stands.
			if dec, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(string(value), "=")); err == nil {
				value = dec
			}
		}
		if len(value) == 0 {
			continue
		}
		it := item{path: name, name: base, ext: extension(base), label: "xattr " + attr}
		if _, err := w.scanFile(it, bytes.NewReader(value), int64(len(value))); err != nil {
			return err
		}
	}
	return nil
}
