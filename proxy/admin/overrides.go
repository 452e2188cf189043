package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/storage"
)

// ParseSubject turns what an operator typed into an override subject: a
// digest (an image given by digest counts as its digest) or a fully
// qualified repository name. canonical spells the registry as the registry
// API reads it (any case, any of Docker Hub's aliases): a subject stored
// in another spelling would never match a request.
func ParseSubject(in string, canonical func(string) string) (subject string, image string, err error) {
	in = strings.TrimSpace(in)
	if in == "" {
		return "", "", fmt.Errorf("%w: a subject is required: a digest, an image by digest, or a repository", errBadRequest)
	}
	if d, err := digest.Parse(in); err == nil {
		return d.String(), "", nil
	}
	in = canonical(in)
	named, err := reference.ParseNormalizedNamed(in)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q is not a digest, an image by digest or a repository: %v", errBadRequest, in, err)
	}
	if cn, ok := named.(reference.Canonical); ok {
		return cn.Digest().String(), named.String(), nil
	}
	if _, ok := named.(reference.Tagged); ok {
		return "", "", fmt.Errorf("%w: %q names a tag, which can move: give the image's digest, or the repository %s", errBadRequest, in, reference.TrimNamed(named).String())
	}
	return named.Name(), "", nil
}

// setOverride records an operator's allow or deny. Allowing an image by
// its manifest digest writes that one record: the gate serves the image's
// blobs through it, by relation, under the names that carry the image (see
// gate.Gate.JudgeBlob), so no blob records are written for it. Each change
// is written to the audit log first: a change that cannot be audited is
// not made.
func (c *Console) setOverride(ctx context.Context, p principal, req OverrideRequest) ([]storage.Override, error) {
	subject, image, err := ParseSubject(req.Subject, c.opts.CanonicalName)
	if err != nil {
		return nil, err
	}
	action := storage.Action(strings.ToLower(strings.TrimSpace(req.Action)))
	if action != storage.Allow && action != storage.Deny {
		return nil, fmt.Errorf("%w: action must be allow or deny, not %q", errBadRequest, req.Action)
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" {
		return nil, fmt.Errorf("%w: a reason is required", errBadRequest)
	}
	if len(reason) > 500 {
		return nil, fmt.Errorf("%w: the reason is longer than 500 characters", errBadRequest)
	}
	if strings.Contains(reason, storage.LegacyImageMark) {
		// Records of earlier releases tied a blob's allow to an image by
		// this text at the end of the reason, and the store still reads
		// them so: a new override carrying it would be read as tied to
		// that image and removed with it.
		return nil, fmt.Errorf("%w: a reason may not contain %q, which earlier releases used to tie a blob's allow to an image", errBadRequest, strings.TrimSpace(storage.LegacyImageMark))
	}
	now := time.Now().UTC()
	o := storage.Override{Subject: subject, Action: action, Reason: reason, Actor: p.actor(), Time: now}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	rec := storage.AuditRecord{Time: now, Kind: storage.AuditOverride, Actor: o.Actor, Subject: o.Subject,
		Action: string(o.Action), Reason: o.Reason, Image: image}
	if err := c.appendAudit(ctx, rec); err != nil {
		return nil, fmt.Errorf("audit log unavailable, override not made: %w", err)
	}
	if err := c.opts.Overrides.PutOverride(ctx, o); err != nil {
		return nil, fmt.Errorf("store override for %s: %w", o.Subject, err)
	}
	c.log.Warn("override set", "subject", o.Subject, "action", string(o.Action), "actor", o.Actor, "reason", o.Reason)
	list := []storage.Override{o}
	c.opts.Metrics.OverrideChanged(string(action))
	c.opts.Live.notify(sseMessage{Event: "override", Data: list})
	return list, nil
}

// removeOverride removes an override, and with an image's allow the allows
// earlier releases made for its blobs: those whose Image is the image's
// digest. (The store fills Image in on records an older release wrote,
// which named the image at the end of their reason.)
func (c *Console) removeOverride(ctx context.Context, p principal, in string) ([]string, error) {
	subject, _, err := ParseSubject(in, c.opts.CanonicalName)
	if err != nil {
		return nil, err
	}
	o, err := c.opts.Overrides.Override(ctx, subject)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("no override for %s: %w", subject, err)
		}
		return nil, err
	}
	subjects := []string{subject}
	if d, err := digest.Parse(subject); err == nil && o.Action == storage.Allow {
		all, err := c.opts.Overrides.Overrides(ctx)
		if err != nil {
			return nil, err
		}
		for _, b := range all {
			if b.Subject != subject && b.Image == d {
				subjects = append(subjects, b.Subject)
			}
		}
	}
	for _, sub := range subjects {
		rec := storage.AuditRecord{Kind: storage.AuditOverride, Actor: p.actor(), Subject: sub, Action: "remove",
			Reason: "removed " + string(o.Action) + " override"}
		if err := c.appendAudit(ctx, rec); err != nil {
			return nil, fmt.Errorf("audit log unavailable, override not removed: %w", err)
		}
		if err := c.opts.Overrides.DeleteOverride(ctx, sub); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("remove override for %s: %w", sub, err)
		}
		c.log.Warn("override removed", "subject", sub, "actor", p.actor())
	}
	c.opts.Metrics.OverrideChanged("remove")
	c.opts.Live.notify(sseMessage{Event: "override", Data: map[string]any{"removed": subjects}})
	return subjects, nil
}

func (c *Console) overrideOf(ctx context.Context, subject string) (*storage.Override, error) {
	o, err := c.opts.Overrides.Override(ctx, subject)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &o, nil
}

// blockedWithOverrides is the blocked list with each entry's override on
// its digest, or a deny on its repository.
func (c *Console) blockedWithOverrides(ctx context.Context) []BlockedImage {
	list := c.opts.Live.BlockedImages()
	overrides, err := c.opts.Overrides.Overrides(ctx)
	if err != nil {
		return list
	}
	by := make(map[string]storage.Override, len(overrides))
	for _, o := range overrides {
		by[o.Subject] = o
	}
	for i := range list {
		if o, ok := by[list[i].Digest.String()]; ok {
			list[i].Override = &o
		} else if named, err := reference.ParseNormalizedNamed(list[i].Image); err == nil {
			// A repository allow does not lift a scan's refusal, so only
			// a repository deny is shown as this image's override.
			if o, ok := by[named.Name()]; ok && o.Action == storage.Deny {
				list[i].Override = &o
			}
		}
	}
	return list
}
