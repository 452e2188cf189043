package storage

import (
	"testing"
	"time"
)

// Times in whole seconds (a filesystem that keeps no finer ones) get the
// one-second margin; any sub-second part in either time, the fine one.
func TestMarginOfAFilesTimes(t *testing.T) {
	sec := int64(time.Second)
	cases := []struct {
		mtime, ctime int64
		want         time.Duration
	}{
		{1_700_000_000 * sec, 1_700_000_000 * sec, coarseMargin},
		{1_700_000_000 * sec, 1_700_000_000*sec + 4_000_000, fineMargin},
		{1_700_000_000*sec + 1, 1_700_000_000 * sec, fineMargin},
	}
	for _, c := range cases {
		if got := (fileID{mtime: c.mtime, ctime: c.ctime}).margin(); got != c.want {
			t.Errorf("mtime %d ctime %d: margin %v, want %v", c.mtime, c.ctime, got, c.want)
		}
	}
}
