// Package bytepairs finds where any of a few two-byte sequences occurs in
// a buffer, at the speed of memory: one AVX2 pass compares every position
// with every pair at once (a scalar loop where the CPU has no AVX2).
//
// The scanner looks for compressed streams behind the start of every file
// (a gzip appended to a script or to a program) by their magic numbers.
// Each magic's first byte alone occurs every few hundred bytes of a
// program, and stopping at each of them cost more than the pass itself;
// a pair of bytes from each magic occurs a thousand times more rarely.
// What is found is only a candidate: the caller checks the whole magic.
package bytepairs
