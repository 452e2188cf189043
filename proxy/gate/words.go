package gate

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// The decision is made on findings, with the policy in force, every time:
// a stored verdict keeps what the scanner found, and the policy (per-category
// actions, how many medium indicators block) can change without a rescan.

// judged is the policy's answer for a set of verdicts, with each finding
// put back in the blob it came from.
type judged struct {
	blocked  []verdict.Finding
	warnings []verdict.Finding
}

func judge(p scanner.Policy, verdicts []storage.Verdict) judged {
	var all []verdict.Finding
	where := map[verdict.Finding]digest.Digest{}
	for _, v := range verdicts {
		for _, f := range v.Findings {
			layer := f.Layer
			if layer == "" {
				layer = v.Digest
			}
			f.Layer = ""
			all = append(all, f)
			if _, ok := where[f]; !ok {
				where[f] = layer
			}
		}
	}
	d := p.Decide(all)
	back := func(fs []verdict.Finding) []verdict.Finding {
		out := make([]verdict.Finding, 0, len(fs))
		for _, f := range fs {
			f.Layer = where[f]
			out = append(out, f)
		}
		return out
	}
	return judged{blocked: back(d.Blocking), warnings: back(d.Warnings)}
}

// describe words one finding the way a person can act on it: which blob,
// which file (or config field), which rule and what it means.
func describe(f verdict.Finding, config digest.Digest) string {
	noun := "layer"
	if f.Layer == config && config != "" {
		noun = "image config"
	}
	where := "file " + f.Path
	if p, ok := strings.CutPrefix(f.Path, "config:"); ok {
		where = p
	}
	what := f.Rule
	if f.Description != "" {
		what += " (" + f.Description + ")"
	}
	if f.Path == "" {
		return fmt.Sprintf("%s %s matched %s", noun, f.Layer, what)
	}
	return fmt.Sprintf("%s %s, %s matched %s", noun, f.Layer, where, what)
}

// blockedBy is the refusal of an image (or a blob) by the findings that
// block it, the strongest (high severity) named first.
func blockedBy(image string, blocking []verdict.Finding, config digest.Digest) Decision {
	first := 0
	for i, f := range blocking {
		if f.Severity == verdict.SeverityHigh {
			first = i
			break
		}
	}
	msg := fmt.Sprintf("pullgate: %s blocked: %s", image, describe(blocking[first], config))
	if len(blocking) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(blocking)-1)
	}
	return Decision{Outcome: verdict.Blocked, Kind: Denied, Findings: blocking, Message: msg}
}

// warningHeader words the findings that only warn, for the OCI Warning
// header (code 299) that clients may show.
func warningHeader(image string, warnings []verdict.Finding, config digest.Digest) []string {
	var out []string
	for i, f := range warnings {
		if i == 5 {
			out = append(out, fmt.Sprintf(`299 - "pullgate: %s: %d more findings that only warn"`, image, len(warnings)-5))
			break
		}
		text := strings.ReplaceAll(describe(f, config), `"`, `'`)
		out = append(out, fmt.Sprintf(`299 - "pullgate: %s: warning: %s"`, image, text))
	}
	return out
}
