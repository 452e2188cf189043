package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The side-by-side comparison against distribution's proxy mode
// (docs/performance.md, "Against distribution's proxy"). Every cold pull
// gets a fresh mirror with empty storage; each round runs pullgate-hold,
// pullgate-stream and distribution in turn, so that a busy spell of the
// machine falls on all three.

// clientLink is the client's own link to the mirror in the capped
// condition: 125 MB/s, a 1 Gbit/s LAN.
const clientLink = 125_000_000

// rounds is how many interleaved rounds each condition runs:
// $PULLGATE_BENCH_ROUNDS, default 3.
func rounds() int {
	if n, err := strconv.Atoi(os.Getenv("PULLGATE_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// warmReps is how many warm pulls one round makes; the median is kept.
const warmReps = 3

// pullSample is one pull through one mirror.
type pullSample struct {
	wall time.Duration
	cpu  time.Duration   // the mirror's CPU time, not the client's
	ttfb []time.Duration // per layer, from the start of the pull to its first byte
}

// BenchmarkCompare pulls today's image ("small") and the large one
// through pullgate and distribution's proxy mode, side by side:
// cold with the upstream throttled and the client's link capped
// ("capped"), cold with the upstream throttled and the client uncapped
// then warm on the same mirror ("uncapped"). Select one with -bench, e.g.
// -bench 'Compare/large/capped'.
func BenchmarkCompare(b *testing.B) {
	im := requireEnabled(b)
	requireDistribution(b)
	up := startFileRegistry(b)
	small, err := smallFileImage(im)
	if err != nil {
		b.Fatal(err)
	}
	up.add(small)
	var largeOnce sync.Once
	var large *fileImage
	loadLarge := func(b *testing.B) *fileImage {
		largeOnce.Do(func() {
			if large, err = largeFileImage(); err != nil {
				b.Fatalf("build the large image: %v", err)
			}
			up.add(large)
			results.setImage("large", large)
		})
		return large
	}
	results.setImage("small", small)
	for _, name := range []string{"small", "large"} {
		for _, capped := range []bool{true, false} {
			cond := "uncapped"
			if capped {
				cond = "capped"
			}
			b.Run(name+"/"+cond, func(b *testing.B) {
				fi := small
				if name == "large" {
					fi = loadLarge(b)
				}
				onceFor(b, name+"/"+cond, func() { compareCold(b, up, fi, capped) })
				reportCompare(b, name, cond)
			})
		}
	}
}

func requireDistribution(b *testing.B) {
	b.Helper()
	if _, err := os.Stat(registryBinary()); err != nil {
		b.Skipf("distribution's registry %s is needed as the baseline (make deps installs it): %v", distributionVersion, err)
	}
}

var (
	doneMu sync.Mutex
	done   = map[string]bool{}
)

// onceFor runs f the first time key is seen: the testing package calls a
// benchmark again with a larger b.N, and a comparison's rounds are its own.
func onceFor(b *testing.B, key string, f func()) {
	doneMu.Lock()
	seen := done[key]
	done[key] = true
	doneMu.Unlock()
	if !seen {
		f()
	}
}

// compareCold runs the interleaved rounds of one cold condition.
func compareCold(b *testing.B, up *fileRegistry, im *fileImage, capped bool) {
	up.throttle.Store(throttle)
	defer up.throttle.Store(0)
	cond := "uncapped"
	if capped {
		cond = "capped"
	}
	for round := range rounds() {
		for _, sys := range systems {
			m := startMirror(b, sys, up)
			target := m.url()
			var rl *relay
			if capped {
				rl = startRelay(b, m.addr, clientLink)
				target = rl.url()
			}
			s, err := timedPull(target, im, m)
			if rl != nil {
				rl.close()
			}
			if err == nil && !capped {
				var warm pullSample
				var reps []pullSample
				if warm, reps, err = warmPull(target, im, m); err == nil {
					results.addPull(im.name, "warm", sys, warm)
					b.Logf("%s warm round %d %s: %v", im.name, round+1, sys, walls(reps))
				}
			}
			m.stop()
			if err != nil {
				b.Fatalf("%s %s round %d through %s: %v", im.name, cond, round+1, sys, err)
			}
			results.addPull(im.name, cond, sys, s)
			b.Logf("%s %s round %d %s: %.3fs (mirror %.2f cpu-s)", im.name, cond, round+1, sys, s.wall.Seconds(), s.cpu.Seconds())
		}
	}
}

// timedPull is one pull through the mirror m (reached at url), timed,
// with the mirror's CPU time and each layer's time to first byte.
func timedPull(url string, im *fileImage, m *mirror) (pullSample, error) {
	tr := clientTransport()
	defer tr.CloseIdleConnections()
	pos := map[digest.Digest]int{}
	for i, l := range im.layers {
		pos[l.Digest] = i
	}
	var mu sync.Mutex
	ttfb := make([]time.Duration, len(im.layers))
	runtime.GC()
	start, cpu0 := time.Now(), m.cpu()
	_, err := pullObserved(context.Background(), &http.Client{Transport: tr}, url, repo, im.tag, func(d ocispec.Descriptor) {
		if i, ok := pos[d.Digest]; ok {
			mu.Lock()
			ttfb[i] = time.Since(start)
			mu.Unlock()
		}
	})
	return pullSample{wall: time.Since(start), cpu: m.cpu() - cpu0, ttfb: ttfb}, err
}

// warmPull is the median of warmReps pulls through a mirror that has the
// image already, and every pull in the order made.
func warmPull(url string, im *fileImage, m *mirror) (pullSample, []pullSample, error) {
	var samples []pullSample
	for range warmReps {
		s, err := timedPull(url, im, m)
		if err != nil {
			return s, samples, err
		}
		samples = append(samples, s)
	}
	sorted := slices.Clone(samples)
	slices.SortFunc(sorted, func(a, b pullSample) int { return int(a.wall - b.wall) })
	return sorted[len(sorted)/2], samples, nil
}

// walls is each pull's wall time and the mirror's CPU time, in seconds.
func walls(ss []pullSample) string {
	var b strings.Builder
	for i, s := range ss {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%.3fs (%.2f cpu-s)", s.wall.Seconds(), s.cpu.Seconds())
	}
	return b.String()
}

// reportCompare reports one condition's medians and ratios as benchmark
// metrics (the summary prints them all).
func reportCompare(b *testing.B, image, cond string) {
	conds := []string{cond}
	if cond == "uncapped" {
		conds = append(conds, "warm")
	}
	for _, c := range conds {
		dist := results.pullMedian(image, c, sysDist)
		for _, sys := range systems {
			med := results.pullMedian(image, c, sys)
			b.ReportMetric(med.Seconds(), c+"-"+sys+"-s/pull")
			if sys != sysDist && dist > 0 {
				b.ReportMetric(med.Seconds()/dist.Seconds(), c+"-"+sys+"/distribution")
			}
		}
	}
}
