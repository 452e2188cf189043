package scanner

import (
	"context"
	"io"
)

// ScanArtifact scans a blob that is neither a tar layer nor an image config.
func (s *Scanner) ScanArtifact(ctx context.Context, r io.Reader, prio Prioritizer) (Result, error) {
	return s.ScanLayer(ctx, r, prio)
}
