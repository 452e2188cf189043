package proxy

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
// A blob is judged alone when it is served; an image is judged on the
// findings of its config and all its layers together, so that evidence
// spread over layers adds up.

// blobBlocked reports whether a blob's own findings refuse it under the
// current policy (an error verdict always does).
func (s *Server) blobBlocked(v storage.Verdict) bool {
	if v.Status == storage.StatusError {
		return true
	}
	if len(v.Findings) == 0 {
		return false
	}
	return s.opts.Decision.Decide(v.Findings).Blocked
}

// judged is the policy's answer for one image, with each finding put back
// in the blob it came from.
type judged struct {
	blocked  []storage.Finding
	warnings []storage.Finding
}

func (s *Server) judge(verdicts []storage.Verdict) judged {
	var all []scanner.Finding
	where := map[scanner.Finding]digest.Digest{}
	for _, v := range verdicts {
		for _, f := range v.Findings {
			f.Layer = ""
			all = append(all, f)
			if _, ok := where[f]; !ok {
				where[f] = v.Digest
			}
		}
	}
	d := s.opts.Decision.Decide(all)
	back := func(fs []scanner.Finding) []storage.Finding {
		out := make([]storage.Finding, 0, len(fs))
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
func describe(f storage.Finding, config digest.Digest) string {
	noun := "layer"
	if f.Layer == config && config != "" {
		noun = "config"
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

// blockedBy is the refusal of an image by the findings that block it, the
// strongest (high severity) named first.
func blockedBy(image string, blocking []storage.Finding, config digest.Digest) decision {
	first := 0
	for i, f := range blocking {
		if f.Severity == scanner.SeverityHigh {
			first = i
			break
		}
	}
	msg := fmt.Sprintf("pullgate: %s blocked: %s", image, describe(blocking[first], config))
	if len(blocking) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(blocking)-1)
	}
	return decision{outcome: verdict.Blocked, findings: blocking, message: msg, err: errDenied(msg)}
}

// blobRefusal is the refusal of one blob by its own verdict.
func (s *Server) blobRefusal(name string, ref blobRef, v storage.Verdict) decision {
	if v.Status == storage.StatusError {
		msg := fmt.Sprintf("pullgate: %s %s of %s refused: could not be scanned: %s", ref.noun(), ref.Digest, name, v.Reason)
		return decision{outcome: verdict.Failed, message: msg, err: errDenied(msg)}
	}
	j := s.judge([]storage.Verdict{v})
	config := digest.Digest("")
	if ref.isConfig() {
		config = ref.Digest
	}
	return blockedBy(name, j.blocked, config)
}

// warningHeader words the findings that only warn, for the OCI Warning
// header (code 299) that clients may show.
func warningHeader(image string, warnings []storage.Finding, config digest.Digest) []string {
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
