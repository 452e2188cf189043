// Package gate judges what pullgate may serve. It holds the one decision
// (Decide): operator overrides, the known-bad list, the publisher policy,
// the verdicts of an image's blobs under the current ruleset and the
// scanner's decision policy, taken in that order and turned into a typed
// Decision with the message a person reads. The registry API, prefetch,
// rescan, warm and `pullgate scan` all ask it; nothing else decides.
//
// gate never writes HTTP: a Decision says what kind of refusal it is
// (Kind), and the registry API turns that into a status and an OCI error.
// It never serves a byte either (in stream mode it only hands the registry
// API a BlobStream, which stops short of a layer's tail until the gate has
// decided), and never turns a verdict of an older ruleset into one of the
// current ruleset.
package gate
