package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
)

// resultSet holds the figures of this run, by benchmark name.
type resultSet struct {
	mu    sync.Mutex
	m     map[string]result
	notes []string // comparisons measured outside measure, one line each

	// The side-by-side comparison with distribution (compare_summary_test.go).
	pulls    map[string][]pullSample // by image/condition/system, one per round
	images   map[string]*fileImage
	loads    map[string]loadResult // by ref kind/system
	mem      map[string]memoryResult
	cmpNotes []string
}

var results = &resultSet{m: map[string]result{}, pulls: map[string][]pullSample{},
	images: map[string]*fileImage{}, loads: map[string]loadResult{}, mem: map[string]memoryResult{}}

func (rs *resultSet) empty() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.m)+len(rs.notes)+len(rs.pulls)+len(rs.loads)+len(rs.mem)+len(rs.cmpNotes) == 0
}

func (rs *resultSet) set(name string, r result) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.m[name] = r
}

// note keeps a line for the summary: a benchmark with sub-benchmarks has
// its own log and metrics dropped by the testing package.
func (rs *resultSet) note(format string, args ...any) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.notes = append(rs.notes, fmt.Sprintf(format, args...))
}

func (rs *resultSet) get(name string) result {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.m[name]
}

// targets are the ratios pullgate promises (see docs/performance.md).
var targets = []struct {
	what     string
	num, den string
	target   float64
}{
	{"throttled 50 MB/s: cold pull through pullgate / direct pull", "throttled/pullgate-cold", "throttled/direct", 1.25},
	{"loopback: cold pull through pullgate / gunzip (gzip -dc) of the layers", "loopback/pullgate-cold", "loopback/gunzip-cli", 1.5},
	{"loopback: cold pull through pullgate / in-process Go gunzip", "loopback/pullgate-cold", "loopback/gunzip", 0},
	{"loopback: warm pull through pullgate / direct pull", "loopback/pullgate-warm", "loopback/direct", 1.1},
	// No target: how close a cold pull comes to the scanner alone on the
	// same layers (decompression and YARA, no network, no storage).
	{"loopback: cold pull through pullgate / scanner alone (gzip)", "loopback/pullgate-cold", "scan/gzip", 0},
}

var figureOrder = []string{
	"throttled/direct", "throttled/pullgate-cold",
	"loopback/gunzip", "loopback/gunzip-cli", "loopback/pullgate-cold", "loopback/direct", "loopback/pullgate-warm",
	"scan/tar", "scan/gzip",
}

// printSummary writes the figures and the ratios against their targets.
func printSummary(w io.Writer) {
	fmt.Fprintf(w, "\n=== pullgate pull benchmark summary ===\n")
	fmt.Fprintf(w, "machine: %s, %d CPUs (GOMAXPROCS %d), %s %s/%s; scanner workers %d\n",
		cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintf(w, "load average (1, 5, 15 min): %s at the start, %s at the end\n", loadAtStart, loadAverage())
	if image != nil {
		fmt.Fprint(w, image.describe())
	}
	fmt.Fprintf(w, "\n%-26s %10s %10s %11s\n", "benchmark", "s/pull", "MB/s", "cpu-s/pull")
	for _, name := range figureOrder {
		r, ok := results.m[name]
		if !ok {
			continue
		}
		unit := "s/pull"
		if strings.HasPrefix(name, "scan/") {
			unit = "s/image"
		}
		extra := ""
		if strings.HasPrefix(name, "scan/") {
			extra = fmt.Sprintf("  (%.1f MB/s/worker, uncompressed)", r.mbps()/float64(runtime.NumCPU()))
		}
		fmt.Fprintf(w, "%-26s %10.3f %10.1f %11.3f  %s%s\n", name, r.perRun.Seconds(), r.mbps(), r.cpu.Seconds(), unit, extra)
	}
	fmt.Fprintf(w, "\n%-62s %7s %7s  %s\n", "ratio", "value", "target", "")
	for _, t := range targets {
		n, okn := results.m[t.num]
		d, okd := results.m[t.den]
		if !okn || !okd || d.perRun <= 0 {
			target := "-"
			if t.target > 0 {
				target = fmt.Sprintf("≤%.2f", t.target)
			}
			fmt.Fprintf(w, "%-62s %7s %7s  %s\n", t.what, "n/a", target, "not run")
			continue
		}
		ratio := n.perRun.Seconds() / d.perRun.Seconds()
		if t.target == 0 {
			fmt.Fprintf(w, "%-62s %7.2f %7s  %s\n", t.what, ratio, "-", "(information)")
			continue
		}
		verdict := "PASS"
		if ratio > t.target {
			verdict = "MISS"
		}
		fmt.Fprintf(w, "%-62s %7.2f %7s  %s\n", t.what, ratio, fmt.Sprintf("≤%.2f", t.target), verdict)
	}
	if len(results.notes) > 0 {
		fmt.Fprintf(w, "\nthe scanner against its baselines:\n")
		for _, n := range results.notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	printComparison(w)
	fmt.Fprintln(w)
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
