package gate

import (
	"fmt"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// Decisions that come from what is said of a digest itself, whatever its
// content: an operator's override and the known-bad list.

// decideIndex judges an index. It is served for its entries to be judged
// one by one, but a deny or the known-bad list on its own digest refuses
// it: that is the digest a person pulls by. An allow changes nothing.
func decideIndex(p scanner.Policy, f Facts, image string) Decision {
	if d, overridden := decideOverride(f, image); overridden && d.Refused() {
		return d
	}
	if d, ok := knownBad(p, f, image); ok {
		return d
	}
	if f.Invalid != nil {
		return Decision{Outcome: verdict.Failed, Kind: Invalid, Message: fmt.Sprintf("pullgate: %s refused: %v", image, f.Invalid)}
	}
	return Decision{Outcome: verdict.Index, Kind: Serve}
}

// decideOverride applies an operator's decision on the digest itself.
func decideOverride(f Facts, image string) (Decision, bool) {
	switch o := f.Override; {
	case f.OverrideErr != nil:
		msg := fmt.Sprintf("pullgate: %s refused: verdict store unavailable: %v", image, f.OverrideErr)
		return Decision{Outcome: verdict.UpstreamFailed, Kind: Unavailable, Message: msg}, true
	case o == nil && f.ImageAllow != nil && f.Subject == Blob:
		a := f.ImageAllow
		msg := fmt.Sprintf("pullgate: %s allowed by operator %s as a blob of image %s: %s", image, a.Actor, a.Subject, a.Reason)
		return Decision{Outcome: verdict.Overridden, Kind: Serve, Message: msg}, true
	case o == nil:
		return Decision{}, false
	case o.Action == storage.Deny:
		msg := fmt.Sprintf("pullgate: %s denied by operator %s: %s", image, o.Actor, o.Reason)
		return Decision{Outcome: verdict.Overridden, Kind: Denied, Message: msg}, true
	default:
		msg := fmt.Sprintf("pullgate: %s allowed by operator %s (%s): %s", image, o.Actor, o.Subject, o.Reason)
		return Decision{Outcome: verdict.Overridden, Kind: Serve, Message: msg}, true
	}
}

// knownBadFindings are the findings the known-bad list makes.
func knownBadFindings(f Facts) []verdict.Finding {
	var out []verdict.Finding
	for _, d := range f.KnownBad {
		out = append(out, verdict.Finding{Rule: "KnownBadBlob", Category: scanner.CategoryKnownBad,
			Severity: verdict.SeverityHigh, Description: "digest on the known-bad list", Layer: d})
	}
	return out
}

// knownBad refuses content on the known-bad list, unless the policy says
// known-bad only warns (then its findings are judged with the rest).
func knownBad(p scanner.Policy, f Facts, name string) (Decision, bool) {
	kb := knownBadFindings(f)
	if len(kb) == 0 || !p.Decide(kb).Blocked {
		return Decision{}, false
	}
	msg := fmt.Sprintf("pullgate: %s blocked: %s is on the known-bad list", name, kb[0].Layer)
	return Decision{Outcome: verdict.Blocked, Kind: Denied, Findings: kb[:1], Message: msg}, true
}
