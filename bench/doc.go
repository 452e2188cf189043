// Package bench measures what pullgate costs a client: a pull through it,
// cold and warm, against a pull straight from the upstream registry and
// against plain decompression of the same layers, on a ~60 MB image cut from
// the host's own Debian root filesystem; and side by side with
// distribution's registry in proxy mode (BenchmarkCompare,
// BenchmarkManifestLoad, BenchmarkMemory), both run as processes in front
// of one upstream, on that image, a ~400 MB one and a 4 GiB layer. It runs
// only with PULLGATE_BENCH=1 (make bench); go test ./... skips it.
//
// The benchmarks measure; they never assert a time. Ratios against a
// baseline run side by side are what docs/performance.md reports.
package bench
