// Command pullgate is a pull-through registry mirror that scans every new
// layer for cryptominers and other malware and refuses images that carry
// them. See the README for how to run it.
//
// This package loads the configuration, wires the pieces (stores, scanner,
// upstream clients, the server) and handles signals. It must never do the
// domain's work: deciding, ingesting, scanning, rescanning and background
// loops belong to the packages that own them.
package main
