package events

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The Grafana dashboard only queries series pullgate exports.
func TestGrafanaDashboardUsesRealMetrics(t *testing.T) {
	dash, err := os.ReadFile(filepath.Join("..", "..", "configs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var parsed map[string]any
	if err := json.Unmarshal(dash, &parsed); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	src, err := os.ReadFile("metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`pullgate_[a-z_]+`).FindAllString(string(dash), -1)
	if len(names) < 10 {
		t.Fatalf("only %d metric references in the dashboard", len(names))
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		if !strings.Contains(string(src), `"`+base+`"`) {
			t.Errorf("the dashboard queries %s, which metrics.go does not define", n)
		}
	}
}
