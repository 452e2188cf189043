package gate

import (
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// Kind says how a decision is answered. The registry API maps each kind to
// one status and OCI error code; the gate knows no HTTP.
type Kind uint8

const (
	Serve           Kind = iota // not refused: serve it
	Denied                      // a decision against the content or its name (403 DENIED)
	Invalid                     // the manifest cannot be read as one (MANIFEST_INVALID)
	Unavailable                 // a store failed; nothing is known (503 UNAVAILABLE)
	Retry                       // still being scanned when the hold ran out (429, RetryAfter)
	Upstream                    // upstream failed, or the client left; Cause says how (429 or 503)
	UnknownManifest             // no such manifest there (404 MANIFEST_UNKNOWN)
	UnknownBlob                 // no such blob there (404 BLOB_UNKNOWN)
)

// Decision is the gate's answer for one image manifest or one blob.
type Decision struct {
	Outcome  verdict.Outcome
	Kind     Kind
	Findings []verdict.Finding // what refused it, or what it was served with
	Message  string            // what a person reads: the event's reason and the client's error
	// Warnings are the values of the OCI Warning header for an image
	// served with findings that only warn.
	Warnings []string
	// Where and Cause word an Upstream refusal: the client reads Where
	// followed by the public text of Cause.
	Where      string
	Cause      error
	RetryAfter time.Duration // for Retry
}

// Refused reports whether the content must not be served.
func (d Decision) Refused() bool { return d.Kind != Serve }

// Subject is what a decision is about.
type Subject uint8

const (
	Image Subject = iota // an image manifest: its config and layers judged together
	Blob                 // one blob, judged alone in every role it is known in
	// Index is an index (a manifest list): only pointers, each gated when
	// asked for, so it is served without a hold once its name is admitted
	// and its entries point nowhere but here.
	Index
)

// Facts are what the gate gathered about one image manifest or one blob
// before deciding. Decide reads nothing else. Gathering may stop early
// where the precedence makes the rest moot (a deny needs no scan); facts
// not gathered are left zero.
type Facts struct {
	Subject Subject
	Name    string        // the repository, "docker.io/library/alpine"
	Digest  digest.Digest // the manifest's or the blob's digest
	// NameRefused is set when the name is refused before anything is
	// fetched: an operator's deny on the repository, or the publisher policy.
	NameRefused *Refusal
	// LinkedRefused is set when another repository carrying the same
	// manifest is denied by an operator. An operator's allow on the
	// manifest's digest lifts it (the name asked for is judged by
	// NameRefused, which no digest allow lifts).
	LinkedRefused *Refusal
	// Override is an operator's allow or deny on Digest itself; OverrideErr
	// says it (or a blob's, see BlobDenied) could not be read.
	Override    *storage.Override
	OverrideErr error
	// ImageAllow is, for a blob whose content is refused and that has no
	// override of its own, an operator's allow on an image (by manifest
	// digest) that lists the blob and is linked under Name.
	ImageAllow *storage.Override
	// BlobDenied lists an operator's denies on the digests of an image's
	// blobs: each refuses the image, as the known-bad list does.
	BlobDenied []storage.Override
	// RulesetID is the ruleset current when the facts were complete. A
	// verdict gathered under another one (the rules changed while the facts
	// were gathered) decides nothing: the request is refused as transient.
	RulesetID string
	// Invalid is set when an image manifest cannot be judged as one
	// (malformed, too many layers, foreign or inline blobs).
	Invalid error
	// Config is the image's config blob, named "image config" in messages.
	Config digest.Digest
	// KnownBad lists the digests of the subject (the manifest, its blobs)
	// that are on the known-bad list.
	KnownBad []digest.Digest
	// Blobs are the verdicts gathered, in manifest order (config first).
	Blobs []BlobFact
	// RetryAfter is what a client still waiting is told.
	RetryAfter time.Duration
}

// BlobFact is what is known of one blob in one role: a verdict under the
// current ruleset, or why there is none.
type BlobFact struct {
	Ref     Ref
	Verdict storage.Verdict // meaningful when State is Judged
	State   State
	Err     error // the failure, for Failed and Gone
}

// State says whether a blob has a verdict.
type State uint8

const (
	Judged  State = iota // Verdict holds its verdict under the current ruleset
	Pending              // the hold ran out before the verdict
	Failed               // upstream or a store failed: nothing is known of the content
	Gone                 // the client went away while waiting
)

// Refusal is a refusal found while gathering facts (a name refused, a
// manifest not found or malformed, a store unreadable, upstream failing).
// It is an error so that gathering code can return it.
type Refusal struct {
	Outcome verdict.Outcome
	Kind    Kind
	Message string // for Upstream: what failed, followed by Cause's public text
	Cause   error
	// RetryAfter is for Retry.
	RetryAfter time.Duration
}

func (r *Refusal) Error() string { return r.Message }

// Decide is the one decision. The order, first match wins:
//
//  1. the name: an operator's deny on the repository, or the publisher
//     policy; then a deny on another name carrying the manifest, which an
//     allow on the manifest digest lifts;
//  2. an operator's override on the digest (for a blob without one, an
//     allowed image listing it): deny refuses, allow serves;
//  3. an image manifest pullgate cannot judge as one is refused;
//  4. the known-bad list (unless its action says warn), or a deny on a blob;
//  5. findings that block: each blob's alone, and an image's together;
//  6. a blob that could not be scanned (a limit, corrupt content);
//  7. an upstream or store failure, a verdict of rules other than
//     RulesetID (transient), or the client gone;
//  8. a verdict still missing when the hold ran out;
//  9. served, with the findings that only warn.
//
// Findings come before scan errors: a finding names a file and a rule a
// person can act on; a scan error only says something was unreadable.
func Decide(p scanner.Policy, f Facts) Decision {
	image := f.Name
	if f.Digest != "" {
		image += "@" + f.Digest.String()
	}
	if r := f.NameRefused; r != nil {
		return Decision{Outcome: r.Outcome, Kind: r.Kind, Message: r.Message}
	}
	if r := f.LinkedRefused; r != nil && (f.Override == nil || f.Override.Action != storage.Allow) {
		if f.OverrideErr != nil {
			d, _ := decideOverride(f, image)
			return d
		}
		return Decision{Outcome: r.Outcome, Kind: r.Kind, Message: r.Message}
	}
	if f.Subject == Index {
		return decideIndex(p, f, image)
	}
	d, overridden := decideOverride(f, image)
	if overridden && (d.Refused() || f.Subject == Image) {
		// An allow on an image manifest serves it whatever its blobs: it
		// is how an operator lets a refused image through.
		return d
	}
	if f.Invalid != nil {
		msg := fmt.Sprintf("pullgate: %s refused: %v", image, f.Invalid)
		return Decision{Outcome: verdict.Failed, Kind: Invalid, Message: msg}
	}
	var content Decision
	if f.Subject == Blob {
		content = decideBlob(p, f)
	} else {
		content = decideImage(p, f, image)
	}
	if !overridden || content.Kind != Denied {
		// An allow on a blob lets through what its content refused; it
		// cannot make upstream answer, and on a blob that passes anyway it
		// changes nothing.
		return content
	}
	d.Findings = content.Findings
	return d
}

// decideImage judges an image manifest on the verdicts of its blobs.
func decideImage(p scanner.Policy, f Facts, image string) Decision {
	if d, ok := knownBad(p, f, image); ok {
		return d
	}
	if len(f.BlobDenied) > 0 {
		o := f.BlobDenied[0]
		msg := fmt.Sprintf("pullgate: %s refused: its blob %s is denied by operator %s: %s", image, o.Subject, o.Actor, o.Reason)
		return Decision{Outcome: verdict.Overridden, Kind: Denied, Message: msg}
	}
	var (
		judged           []storage.Verdict
		scanErr, upErr   *BlobFact
		gone             *BlobFact
		pending, waiting int
	)
	if kb := knownBadFindings(f); len(kb) > 0 {
		judged = append(judged, storage.Verdict{Findings: kb})
	}
	for i := range f.Blobs {
		b := &f.Blobs[i]
		switch {
		case b.State == Pending:
			pending++
		case b.State == Gone:
			gone = first(gone, b)
		case b.State == Failed:
			upErr = first(upErr, b)
		case stale(f, b):
			upErr = first(upErr, staleFact(b))
		case b.Verdict.Status == storage.StatusError:
			scanErr = first(scanErr, b)
		default:
			judged = append(judged, b.Verdict)
		}
		if b.State != Judged {
			waiting++
		}
	}
	// Findings only add up: what blocks alone blocks together, and
	// evidence spread over layers (two medium indicators, a packed binary
	// and a wallet) blocks the image although each blob passes alone.
	j := judge(p, judged)
	switch {
	case len(j.blocked) > 0:
		return blockedBy(image, j.blocked, f.Config)
	case scanErr != nil:
		msg := fmt.Sprintf("pullgate: %s refused: %s %s could not be scanned: %s", image, scanErr.Ref.Noun(), scanErr.Ref.Digest, scanErr.Verdict.Reason)
		return Decision{Outcome: verdict.Failed, Kind: Denied, Message: msg}
	case upErr != nil:
		msg := fmt.Sprintf("pullgate: %s refused: %v", image, upErr.Err)
		return Decision{Outcome: verdict.UpstreamFailed, Kind: Upstream, Message: msg, Where: "pullgate: " + image, Cause: upErr.Err}
	case gone != nil:
		return Decision{Outcome: verdict.Pending, Kind: Upstream, Message: "client went away", Where: "pullgate: " + image, Cause: gone.Err}
	case pending > 0:
		msg := fmt.Sprintf("pullgate: %s is still being scanned (%d of %d blobs done); retry in %s", image, len(f.Blobs)-waiting, len(f.Blobs), f.RetryAfter)
		return Decision{Outcome: verdict.Pending, Kind: Retry, Message: msg, RetryAfter: f.RetryAfter}
	}
	d := Decision{Outcome: verdict.Allowed, Kind: Serve, Findings: j.warnings}
	if len(j.warnings) > 0 {
		d.Message = fmt.Sprintf("pullgate: %s allowed with %d warnings: %s", image, len(j.warnings), describe(j.warnings[0], f.Config))
		d.Warnings = warningHeader(image, j.warnings, f.Config)
	}
	return d
}

// decideBlob judges one blob asked for on its own, in every role it is
// known in: findings in any role refuse it (the same bytes are not served
// by asking for them another way); a role in which it cannot be read at
// all (an error verdict) refuses it only when no role reads it clean,
// since anyone can name a digest in any role in a manifest of their own.
func decideBlob(p scanner.Policy, f Facts) Decision {
	if d, ok := knownBad(p, f, f.Name); ok {
		return d
	}
	var scanErr, clean, other *BlobFact
	for i := range f.Blobs {
		b := &f.Blobs[i]
		switch {
		case b.State != Judged:
			other = first(other, b)
		case stale(f, b):
			other = first(other, staleFact(b))
		case b.Verdict.Status == storage.StatusError:
			scanErr = first(scanErr, b)
		case blobBlocked(p, b.Verdict):
			config := digest.Digest("")
			if b.Ref.IsConfig() {
				config = b.Ref.Digest
			}
			return blockedBy(f.Name, judge(p, []storage.Verdict{b.Verdict}).blocked, config)
		default:
			clean = b
		}
	}
	what := fmt.Sprintf("blob %s of %s", f.Digest, f.Name)
	switch {
	case other != nil && other.State == Pending:
		msg := fmt.Sprintf("pullgate: %s is still being scanned; retry in %s", what, f.RetryAfter)
		return Decision{Outcome: verdict.Pending, Kind: Retry, Message: msg, RetryAfter: f.RetryAfter}
	case other != nil:
		return Decision{Outcome: verdict.UpstreamFailed, Kind: Upstream, Message: fmt.Sprintf("pullgate: %s refused: %v", what, other.Err),
			Where: "pullgate: " + what, Cause: other.Err}
	case clean == nil && scanErr != nil:
		msg := fmt.Sprintf("pullgate: %s %s of %s refused: could not be scanned: %s", scanErr.Ref.Noun(), f.Digest, f.Name, scanErr.Verdict.Reason)
		return Decision{Outcome: verdict.Failed, Kind: Denied, Message: msg}
	}
	var kb []verdict.Finding
	if clean != nil {
		kb = clean.Verdict.Findings
	}
	return Decision{Outcome: verdict.Allowed, Kind: Serve, Findings: append(knownBadFindings(f), kb...)}
}

// stale reports whether a blob's verdict was gathered under a ruleset other
// than the one current when the facts were complete: the rules changed
// while they were gathered, and a decision must rest on one ruleset only.
func stale(f Facts, b *BlobFact) bool {
	return f.RulesetID != "" && b.State == Judged && b.Verdict.RulesetID != f.RulesetID
}

// staleFact words a stale verdict as the transient failure it is.
func staleFact(b *BlobFact) *BlobFact {
	err := fmt.Errorf("%w: the rules changed while %s %s was being judged", errTransient, b.Ref.Noun(), b.Ref.Digest)
	return &BlobFact{Ref: b.Ref, State: Failed, Err: err}
}

func first(cur, b *BlobFact) *BlobFact {
	if cur == nil {
		return b
	}
	return cur
}

func blobBlocked(p scanner.Policy, v storage.Verdict) bool {
	return len(v.Findings) > 0 && p.Decide(v.Findings).Blocked
}

// Word is the one word `pullgate scan` and warm report for a decision:
// "clean" (served, warnings allowed), "blocked" (refused by a decision:
// findings, the known-bad list, a publisher policy or an operator), or
// "error" (refused because it could not be judged: a scan error, an
// upstream failure, a verdict still missing).
func (d Decision) Word() string {
	switch {
	case !d.Refused():
		return "clean"
	case d.Kind == Denied && d.Outcome != verdict.Failed:
		return "blocked"
	}
	return "error"
}

// Error is the message of a refusal, so that a Decision that refuses can
// stand where an error is expected.
func (d Decision) Error() string { return d.Message }
