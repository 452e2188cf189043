// Package samples builds harmless test files that carry the indicators
// pullgate's rules look for: the strings, names and shapes of cryptominers,
// never working code. Tests across the project and make eval use them.
//
// It must never hold or build real malware, nor anything that runs as a
// miner; it never touches the network or the disk, and production code
// never imports it. A sample's bytes are deterministic, so findings and
// digests in tests are stable.
package samples
