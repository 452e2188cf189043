package storage

import (
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
)

// Status is the outcome of scanning one blob under one ruleset.
type Status string

const (
	StatusClean   Status = "clean"
	StatusBlocked Status = "blocked"
	StatusError   Status = "error" // the scan could not finish; serve nothing
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusClean, StatusBlocked, StatusError:
		return true
	}
	return false
}

// Context is how a blob was scanned: the same bytes read as a layer (a tar
// stream of files), as an image config (JSON with a command line and an
// environment) or as a raw artifact answer different questions, so a
// verdict in one context says nothing about another.
type Context string

const (
	ContextLayer    Context = "layer"    // a tar layer, walked file by file
	ContextConfig   Context = "config"   // an image config, read as JSON
	ContextArtifact Context = "artifact" // anything else, scanned as raw bytes
)

// Valid reports whether c is one of the known contexts. The empty context
// of records stored before contexts existed is not.
func (c Context) Valid() bool {
	switch c {
	case ContextLayer, ContextConfig, ContextArtifact:
		return true
	}
	return false
}

// Finding is one indicator found in a blob (the scanner's own type).
type Finding = verdict.Finding

// Verdict is the result of scanning the blob Digest under the ruleset
// RulesetID in Context. A verdict under another ruleset, or in another
// context, says nothing about this one. Records written before contexts
// existed have an empty Context: they are listed by Verdicts but never
// returned by Verdict, so their blobs are scanned again.
type Verdict struct {
	Digest         digest.Digest `json:"digest"`
	RulesetID      string        `json:"ruleset_id"`
	Context        Context       `json:"context,omitempty"`
	Status         Status        `json:"status"`
	Findings       []Finding     `json:"findings,omitempty"`
	Reason         string        `json:"reason,omitempty"` // for StatusError: why the scan could not finish
	Bytes          int64         `json:"bytes"`            // decompressed bytes scanned
	Files          int64         `json:"files"`            // files scanned
	Duration       time.Duration `json:"duration"`         // nanoseconds
	ScannerVersion string        `json:"scanner_version"`
	Time           time.Time     `json:"time"`
}

// Validate refuses a verdict that cannot be stored or looked up again.
func (v Verdict) Validate() error {
	if err := v.Digest.Validate(); err != nil {
		return fmt.Errorf("verdict digest %q: %w: %w", v.Digest, ErrInvalid, err)
	}
	if err := validateRulesetID(v.RulesetID); err != nil {
		return fmt.Errorf("verdict for %s: %w", v.Digest, err)
	}
	if !v.Status.Valid() {
		return fmt.Errorf("verdict for %s: %w: status %q", v.Digest, ErrInvalid, v.Status)
	}
	if !v.Context.Valid() {
		return fmt.Errorf("verdict for %s: %w: context %q", v.Digest, ErrInvalid, v.Context)
	}
	return nil
}

func validateRulesetID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty ruleset id", ErrInvalid)
	}
	return nil
}
