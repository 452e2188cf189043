package storage

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// Action is what an operator override does to its subject.
type Action string

const (
	Allow Action = "allow"
	Deny  Action = "deny"
)

// Override is an operator's explicit decision about a digest or a whole
// repository. Overrides never expire; only DeleteOverride removes one.
type Override struct {
	// Subject is a digest ("sha256:…") or a fully qualified repository
	// name ("docker.io/library/alpine").
	Subject string    `json:"subject"`
	Action  Action    `json:"action"`
	Reason  string    `json:"reason"`
	Actor   string    `json:"actor"`
	Time    time.Time `json:"time"`
	// Image is set on the allows made for the blobs of an image allowed
	// by its manifest digest: that image's digest. They go when it goes.
	Image digest.Digest `json:"image,omitempty"`
}

// Validate refuses an override whose subject or action is malformed, or
// that does not say who made it (overrides are audited).
func (o Override) Validate() error {
	if err := ValidateSubject(o.Subject); err != nil {
		return err
	}
	if o.Action != Allow && o.Action != Deny {
		return fmt.Errorf("override for %s: %w: action %q", o.Subject, ErrInvalid, o.Action)
	}
	if o.Actor == "" {
		return fmt.Errorf("override for %s: %w: empty actor", o.Subject, ErrInvalid)
	}
	return nil
}

// ValidateSubject accepts a digest or a fully qualified repository name
// without tag or digest, the two kinds of override subject.
func ValidateSubject(subject string) error {
	if subject == "" {
		return fmt.Errorf("override subject: %w: empty", ErrInvalid)
	}
	if _, err := digest.Parse(subject); err == nil {
		return nil
	}
	named, err := reference.ParseNamed(subject)
	if err != nil {
		return fmt.Errorf("override subject %q: %w: not a digest or a fully qualified repository name: %w", subject, ErrInvalid, err)
	}
	if !reference.IsNameOnly(named) {
		return fmt.Errorf("override subject %q: %w: repository with a tag or digest", subject, ErrInvalid)
	}
	return nil
}

// LegacyImageMark is how releases before Override.Image tied a blob's
// allow to the image allow it was made with: the reason ended in
// " (blob of image sha256:…)".
const LegacyImageMark = " (blob of image "

// DecodeOverride decodes an override as any release stored it. A record
// written before overrides had an Image field, whose reason ends in the
// mark those releases wrote, gets Image from that mark; its reason keeps
// its text, as the operator and the audit log saw it. Every backend reads
// overrides through it, so an old record means the same thing everywhere.
func DecodeOverride(raw []byte) (Override, error) {
	var o Override
	if err := json.Unmarshal(raw, &o); err != nil {
		return Override{}, fmt.Errorf("decode override: %w", err)
	}
	if o.Image == "" {
		o.Image = legacyImage(o.Reason)
	}
	return o, nil
}

// legacyImage returns the image digest of a legacy blob allow's reason, or
// "" when the reason does not end in a well-formed mark.
func legacyImage(reason string) digest.Digest {
	if !strings.HasSuffix(reason, ")") {
		return ""
	}
	i := strings.LastIndex(reason, LegacyImageMark)
	if i < 0 {
		return ""
	}
	d, err := digest.Parse(reason[i+len(LegacyImageMark) : len(reason)-1])
	if err != nil {
		return ""
	}
	return d
}
