//go:build race

package scanner

// raceEnabled shortens the size-bound tests under the race detector,
// which slows the Go side of a scan several times over.
const raceEnabled = true
