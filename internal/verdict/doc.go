// Package verdict names the nouns that the scanner, the stores, the gate and
// the events share: a Finding (one indicator found in one blob) and an
// Outcome (what pullgate decided about a pull). Each is written once, here,
// so that no layer converts one copy into another.
//
// verdict holds plain values only. It must never import another pullgate
// package, touch the network or a store, or decide anything: deciding is
// the gate's work.
package verdict
