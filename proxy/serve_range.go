package proxy

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// The part of a stored blob a request asks for: Range (one range, as
// registry clients send to resume a download), If-Range and If-None-Match.

// byteRange is the part of a blob a response carries.
type byteRange struct {
	start, length int64
	partial       bool // 206 with Content-Range
}

// requestedRange reads a single-range Range header (what registry clients
// send to resume a download). ok is false for a range that is entirely
// outside the blob (416). A header this does not honour (malformed,
// several ranges, an If-Range that does not match) gets the whole blob, as
// HTTP allows.
func requestedRange(r *http.Request, dgst digest.Digest, size int64) (rg byteRange, ok bool) {
	whole := byteRange{start: 0, length: size}
	h := r.Header.Get("Range")
	if h == "" {
		return whole, true
	}
	if ir := r.Header.Get("If-Range"); ir != "" && ir != `"`+dgst.String()+`"` {
		return whole, true
	}
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return whole, true
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return whole, true
	}
	if first == "" { // the last N bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return whole, true
		}
		if n == 0 || size == 0 {
			return byteRange{}, false
		}
		n = min(n, size)
		return byteRange{start: size - n, length: n, partial: true}, true
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 {
		return whole, true
	}
	end := size - 1
	if last != "" {
		if end, err = strconv.ParseInt(last, 10, 64); err != nil || end < start {
			return whole, true
		}
		end = min(end, size-1)
	}
	if start >= size {
		return byteRange{}, false
	}
	return byteRange{start: start, length: end - start + 1, partial: true}, true
}

func etagMatches(header string, dgst digest.Digest) bool {
	etag := `"` + dgst.String() + `"`
	for _, m := range strings.Split(header, ",") {
		if m = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(m), "W/")); m == etag || m == "*" {
			return true
		}
	}
	return false
}
