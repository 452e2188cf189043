package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// seriesCount counts the sample lines /metrics exports.
func seriesCount(t *testing.T, f *fixture) int {
	t.Helper()
	resp, body := f.do(t, "GET", "/metrics")
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	n := 0
	for _, line := range strings.Split(string(body), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			n++
		}
	}
	return n
}

// Made-up paths, as a scanner of the internet sends them, add no series:
// every route label comes from a fixed set.
func TestMetricsLabelsIgnoreRequestText(t *testing.T) {
	f := newAdminFixture(t)
	// One request of each kind first, so that the fixed series exist.
	f.do(t, "GET", "/made-up")
	f.req(t, "GET", "/admin/api/made-up", "bearer:"+testAdminToken, nil)
	f.req(t, "GET", "/admin/made-up", "bearer:"+testAdminToken, nil)
	seriesCount(t, f.fixture)
	before := seriesCount(t, f.fixture)
	for i := range 60 {
		switch i % 3 {
		case 0:
			f.do(t, "GET", fmt.Sprintf("/made-up-%d/x", i))
		case 1:
			f.req(t, "GET", fmt.Sprintf("/admin/api/made-up-%d", i), "bearer:"+testAdminToken, nil)
		default:
			f.req(t, "GET", fmt.Sprintf("/admin/made-up-%d", i), "bearer:"+testAdminToken, nil)
		}
	}
	if after := seriesCount(t, f.fixture); after != before {
		t.Fatalf("60 made-up paths changed the series count from %d to %d", before, after)
	}
	_, body := f.do(t, "GET", "/metrics")
	if strings.Contains(string(body), "made-up") {
		t.Fatal("a label carries request text")
	}
}
