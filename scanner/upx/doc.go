// Package upx restores ELF executables packed by UPX, in process, so the
// scanner sees the program the host will run rather than UPX's compressed
// blocks.
//
// It reads UPX's own structures (l_info, p_info and a b_info before each
// block) to find the packed blocks, never the "UPX!" marks, which packers
// of miners rewrite. It handles amd64, 386 and arm64 ELF packed with the
// NRV2B, NRV2D, NRV2E and LZMA methods and the x86 and arm64 call filters,
// as UPX 3.9x writes them.
//
// It never runs a program, never touches the network, and never allocates
// more than the limit it is given: the sizes a packed file declares are
// checked against the limit before anything is allocated, and every
// decoder checks every read and write against its buffers.
package upx
