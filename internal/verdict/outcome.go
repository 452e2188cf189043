package verdict

import "fmt"

// Outcome is what pullgate decided about one request or one stored blob.
// The zero value is no outcome (an audit record of an override change has
// none). Its text form is the word logs, metrics, the audit log, the admin
// page and alerts have always carried, and is the only place those words
// are written.
type Outcome uint8

const (
	Allowed          Outcome = iota + 1 // every blob scanned clean (warnings allowed)
	Blocked                             // a finding, or the known-bad list, refuses it
	Failed                              // it could not be scanned (a limit, corrupt content): refused
	Pending                             // still being scanned when the hold ran out
	UpstreamFailed                      // upstream or a store failed: refused
	Overridden                          // an operator's allow or deny decided
	Index                               // an index: pointers only, served without a hold
	Policy                              // the publisher policy or a repository deny refused the name
	RetroactiveBlock                    // a stored blob was found bad under new rules and removed
)

var outcomeNames = [...]string{
	Allowed:          "allowed",
	Blocked:          "blocked",
	Failed:           "error",
	Pending:          "pending",
	UpstreamFailed:   "upstream-error",
	Overridden:       "override",
	Index:            "index",
	Policy:           "policy",
	RetroactiveBlock: "retroactive-block",
}

// Outcomes lists every outcome, in order.
func Outcomes() []Outcome {
	out := make([]Outcome, 0, len(outcomeNames)-1)
	for o := Allowed; int(o) < len(outcomeNames); o++ {
		out = append(out, o)
	}
	return out
}

func (o Outcome) String() string {
	if o == 0 || int(o) >= len(outcomeNames) {
		return ""
	}
	return outcomeNames[o]
}

// Refused reports whether the outcome keeps the content from the client.
func (o Outcome) Refused() bool {
	switch o {
	case Allowed, Index:
		return false
	}
	return o != 0
}

// MarshalText writes the outcome's word.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText reads an outcome's word, and the spelling an older release
// used for a retroactive block in some records.
func (o *Outcome) UnmarshalText(b []byte) error {
	p, err := ParseOutcome(string(b))
	if err != nil {
		return err
	}
	*o = p
	return nil
}

// ParseOutcome reads an outcome's word ("" is no outcome).
func ParseOutcome(s string) (Outcome, error) {
	switch s {
	case "":
		return 0, nil
	case "retroactive_block":
		return RetroactiveBlock, nil
	}
	for i, n := range outcomeNames {
		if n != "" && n == s {
			return Outcome(i), nil
		}
	}
	return 0, fmt.Errorf("unknown decision %q", s)
}
