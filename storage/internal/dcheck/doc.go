// Package dcheck validates digests for the stores: go-digest's Validate
// with the common case (sha256, lowercase hex) checked without a regexp,
// since a warm request validates a digest at every store call. It accepts
// and refuses exactly what go-digest does.
package dcheck
