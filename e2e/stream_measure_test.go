package e2e

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// TestStreamColdPullTimes measures the other side of the trade: how long
// each client's cold pull of a clean image takes through pullgate in each
// mode, with the upstream throttled and the client's own link capped at the
// same rate (so hold mode pays for the download twice, as it does in
// production). A measurement, not a test of speed: it asserts only that
// every pull succeeds with the right digest. Run with envMeasure=1; the
// table goes to the log and to envMeasureOut.
func TestStreamColdPullTimes(t *testing.T) {
	if os.Getenv(envMeasure) != "1" {
		t.Skipf("set %s=1 to measure cold pulls per client and mode (about two minutes)", envMeasure)
	}
	const (
		layerSize = 24 << 20
		rate      = 12 << 20 // bytes per second, upstream and client link alike
		rounds    = 3
	)
	clients := []clientSetup{
		{"dockerd registry-mirrors", dockerMirror},
		{"ctr hosts.toml enforce", ctrEnforce},
		{"podman no-fallback", podmanNoFallback},
		{"skopeo copy no-fallback", skopeoNoFallback},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| client | hold (s, %d rounds) | stream (s) | stream / hold (medians) |\n|---|---|---|---|\n", rounds)
	for _, c := range clients {
		times := map[string][]time.Duration{}
		for round := range rounds {
			for _, mode := range []string{"hold", "stream"} {
				t.Run(fmt.Sprintf("%s/%s/%d", c.name, mode, round), func(t *testing.T) {
					times[mode] = append(times[mode], timeColdPull(t, c, mode, layerSize, rate))
				})
			}
		}
		h, s := median(times["hold"]), median(times["stream"])
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f |\n", c.name, seconds(times["hold"]), seconds(times["stream"]), s.Seconds()/h.Seconds())
	}
	t.Log("\n" + b.String())
	if out := os.Getenv(envMeasureOut); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// timeColdPull pulls a fresh image through a fresh pullgate in mode, and
// returns how long the client took.
func timeColdPull(t *testing.T, c clientSetup, mode string, layerSize, rate int) time.Duration {
	hub := testregistry.Start(t)
	img := bigLayerImage("timed "+c.name+mode, layerSize)
	want := hub.Push(t, "library/e2e-timed", "1", img)
	big := digest.FromBytes(img.Layers[len(img.Layers)-1])
	hub.Fault(big, testregistry.Fault{BytesPerSecond: rate})
	modes := strings.ReplaceAll(allStream, "stream", mode)
	pg := startModePullgate(t, hub.URL(), modes)
	tp := startCappedTap(t, pg.URL(), rate)
	p := c.setup(t, tp.Addr(), hub.Host())
	ctx := pullCtx(t)
	start := time.Now()
	out, err := p.Pull(ctx, "library/e2e-timed:1")
	took := time.Since(start)
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	if ok, got := p.Has(ctx, "library/e2e-timed:1"); !ok || got != want {
		t.Fatalf("the client holds the image: %v, digest %q, want %s", ok, got, want)
	}
	return took
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func seconds(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.2f", d.Seconds())
	}
	return strings.Join(parts, ", ")
}
