package bench

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

func pullKey(image, cond, sys string) string { return image + "/" + cond + "/" + sys }

func (rs *resultSet) addPull(image, cond, sys string, s pullSample) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	k := pullKey(image, cond, sys)
	rs.pulls[k] = append(rs.pulls[k], s)
}

func (rs *resultSet) samples(image, cond, sys string) []pullSample {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return slices.Clone(rs.pulls[pullKey(image, cond, sys)])
}

// pullMedian is the median wall time of a condition's rounds through sys.
func (rs *resultSet) pullMedian(image, cond, sys string) time.Duration {
	return median(rs.samples(image, cond, sys), func(s pullSample) time.Duration { return s.wall })
}

func (rs *resultSet) setImage(name string, im *fileImage) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.images[name] = im
}

func (rs *resultSet) addLoad(by, sys string, r loadResult) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.loads[by+"/"+sys] = r
}

func (rs *resultSet) load(by, sys string) loadResult {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.loads[by+"/"+sys]
}

func (rs *resultSet) setMemory(sys string, r memoryResult) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.mem[sys] = r
}

func (rs *resultSet) memory(sys string) memoryResult {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.mem[sys]
}

func (rs *resultSet) compareNote(format string, args ...any) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.cmpNotes = append(rs.cmpNotes, fmt.Sprintf(format, args...))
}

func median[T any](xs []T, key func(T) time.Duration) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	ds := make([]time.Duration, len(xs))
	for i, x := range xs {
		ds[i] = key(x)
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// pullTargets are the ratios against distribution that pullgate must
// reach, per image and condition; a missing one is reported for
// information.
var pullTargets = map[string]float64{
	"large/capped": 1.10, "small/capped": 1.15,
	"large/uncapped": 1.10, "small/uncapped": 1.10,
	"large/warm": 1.0, "small/warm": 1.0,
}

// ttfbSlack is how much later than distribution's a layer's first byte
// may reach the client, cold.
const ttfbSlack = 50 * time.Millisecond

// loadAverage is /proc/loadavg's first three fields.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// loadAtStart is the load average when the benchmark process started.
var loadAtStart = loadAverage()

// printComparison writes the side-by-side figures: pulls, time to first
// byte, manifests under load and memory, each as a ratio against
// distribution's proxy mode.
func printComparison(w io.Writer) {
	rs := results
	if len(rs.pulls)+len(rs.loads)+len(rs.mem) == 0 {
		return
	}
	fmt.Fprintf(w, "\n=== side by side with distribution %s in proxy mode ===\n", distributionVersion)
	fmt.Fprintf(w, "load average (1, 5, 15 min): %s at the start, %s at the end; 2 CPUs shared with the upstream, the client and any other work\n", loadAtStart, loadAverage())
	for _, name := range []string{"small", "large", "huge"} {
		if im, ok := rs.images[name]; ok {
			fmt.Fprintf(w, "image %-5s %d layers, %.1f MB compressed, %.1f MB unpacked\n", name, len(im.layers), mb(im.compressed()), mb(im.unpacked()))
		}
	}
	for _, n := range rs.cmpNotes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	printPulls(w)
	printTTFB(w)
	printLoad(w)
	printMemory(w)
}

func printPulls(w io.Writer) {
	if len(results.pulls) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%-15s %-16s %9s %7s %12s  %-26s %7s  %s\n", "pull", "system", "median s", "rounds", "mirror cpu-s", "ratio to distribution", "target", "")
	for _, image := range []string{"small", "large"} {
		for _, cond := range []string{"capped", "uncapped", "warm"} {
			dist := results.samples(image, cond, sysDist)
			if len(dist) == 0 {
				continue
			}
			distMed := median(dist, func(s pullSample) time.Duration { return s.wall })
			for _, sys := range systems {
				ss := results.samples(image, cond, sys)
				med := median(ss, func(s pullSample) time.Duration { return s.wall })
				cpu := median(ss, func(s pullSample) time.Duration { return s.cpu })
				ratio, verdict, target := "", "", ""
				if sys != sysDist && distMed > 0 {
					r := med.Seconds() / distMed.Seconds()
					ratio = fmt.Sprintf("%.2f (rounds %s)", r, roundRatios(ss, dist))
					if t, ok := pullTargets[image+"/"+cond]; ok {
						target, verdict = fmt.Sprintf("≤%.2f", t), "PASS"
						if r > t {
							verdict = "MISS"
						}
					}
				}
				fmt.Fprintf(w, "%-15s %-16s %9.3f %7d %12.2f  %-26s %7s  %s\n", image+"/"+cond, sys, med.Seconds(), len(ss), cpu.Seconds(), ratio, target, verdict)
			}
		}
	}
	fmt.Fprintf(w, "(capped: upstream 50 MiB/s per blob, client link 125 MB/s; uncapped: upstream 50 MiB/s; warm: loopback; mirror: the mirror's median CPU-s per pull)\n")
}

// roundRatios is the per-round ratios of a against b, lowest to highest.
func roundRatios(a, b []pullSample) string {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if b[i].wall > 0 {
			rs = append(rs, a[i].wall.Seconds()/b[i].wall.Seconds())
		}
	}
	slices.Sort(rs)
	if len(rs) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f–%.2f", rs[0], rs[len(rs)-1])
}

func printTTFB(w io.Writer) {
	header := false
	for _, image := range []string{"small", "large"} {
		dist := results.samples(image, "uncapped", sysDist)
		if len(dist) == 0 {
			continue
		}
		if !header {
			fmt.Fprintf(w, "\ntime to first byte of each layer, cold, uncapped, from the start of the pull (median of rounds; target: at most %v after distribution)\n", ttfbSlack)
			header = true
		}
		for layer := range dist[0].ttfb {
			at := func(s pullSample) time.Duration { return s.ttfb[layer] }
			distAt := median(dist, at)
			line := fmt.Sprintf("  %s layer %d: distribution %.3fs", image, layer, distAt.Seconds())
			for _, sys := range []string{sysHold, sysStream} {
				got := median(results.samples(image, "uncapped", sys), at)
				verdict := "PASS"
				if got-distAt > ttfbSlack {
					verdict = "MISS"
				}
				line += fmt.Sprintf("; %s %.3fs (%+.0f ms, %s)", sys, got.Seconds(), float64((got-distAt).Microseconds())/1000, verdict)
			}
			fmt.Fprintln(w, line)
		}
	}
}

func printLoad(w io.Writer) {
	if len(results.loads) == 0 {
		return
	}
	fmt.Fprintf(w, "\nwarm manifest, %d clients, %v each (target: req/s ≥ distribution's, p99 ≤ distribution's)\n", loadClients, loadDuration())
	for _, by := range []string{"digest", "tag"} {
		dist := results.load(by, sysDist)
		for _, sys := range systems {
			r := results.load(by, sys)
			line := fmt.Sprintf("  by %-6s %-16s %8.0f req/s  p50 %6.1f ms  p99 %6.1f ms  %d failed", by, sys, r.perSecond(), ms(r.p50), ms(r.p99), r.failed)
			if sys != sysDist && dist.perSecond() > 0 && dist.p99 > 0 {
				verdict := "PASS"
				if r.perSecond() < dist.perSecond() || r.p99 > dist.p99 || r.failed > 0 {
					verdict = "MISS"
				}
				line += fmt.Sprintf("  req/s %.2fx, p99 %.2fx distribution's  %s", r.perSecond()/dist.perSecond(), r.p99.Seconds()/dist.p99.Seconds(), verdict)
			}
			fmt.Fprintln(w, line)
		}
	}
}

func printMemory(w io.Writer) {
	if len(results.mem) == 0 {
		return
	}
	fmt.Fprintf(w, "\nmemory: %d clients pull a cold image with one 4 GiB layer at once (target: VmHWM under 300 MiB)\n", memoryClients)
	for _, sys := range []string{sysHold, sysStream} {
		r, ok := results.mem[sys]
		if !ok {
			continue
		}
		verdict := "PASS"
		if r.peak >= 300<<20 {
			verdict = "MISS"
		}
		fmt.Fprintf(w, "  %-16s VmHWM %6.0f MiB, all pulls done in %.1fs  %s\n", sys, float64(r.peak)/(1<<20), r.wall.Seconds(), verdict)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
