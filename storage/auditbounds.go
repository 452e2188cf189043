package storage

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Bounds of an audit record. Most of its text comes from the request (the
// user agent, the client address, the image name) or from upstream content
// (file paths inside a layer), so each string is cut to a fixed size before
// it is stored, logged or shown, and the record as written is at most
// MaxAuditRecordBytes. The stores are then bounded in bytes by their count:
// the Redis stream by its retention times MaxAuditRecordBytes, the admin
// page's ring by its length times the in-memory size of a bounded record.
const (
	// MaxFieldBytes caps a user agent, client address, actor, or a
	// finding's rule, description or file path.
	MaxFieldBytes = 256
	// MaxNameBytes caps an image name or override subject (a repository
	// name alone may be 255 bytes, then comes a tag or digest).
	MaxNameBytes = 512
	// MaxReasonBytes caps a reason.
	MaxReasonBytes = 2048
	// MaxDigestBytes caps a digest: the longest registered algorithm,
	// sha512, takes 135 bytes.
	MaxDigestBytes = 160
	// MaxFindings caps the findings kept with one record.
	MaxFindings = 16
	// MaxAuditRecordBytes caps one record as written (JSON).
	MaxAuditRecordBytes = 8 << 10
)

// cutMark ends a string that was cut, so that a reader knows it was.
const cutMark = "…[cut]"

// Clip returns s if it is at most n bytes, else its first bytes (on a
// UTF-8 boundary) marked as cut, n bytes in all.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := max(n-len(cutMark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + cutMark
}

// boundFinding returns f with its strings cut to their bounds.
func boundFinding(f Finding) Finding {
	f.Rule = Clip(f.Rule, MaxFieldBytes)
	f.Category = Clip(f.Category, MaxFieldBytes)
	f.Severity = Clip(f.Severity, MaxFieldBytes)
	f.Description = Clip(f.Description, MaxFieldBytes)
	f.Path = Clip(f.Path, MaxFieldBytes)
	f.File = Clip(f.File, MaxFieldBytes)
	f.Layer = digestField(f.Layer)
	return f
}

// BoundFindings returns at most MaxFindings findings, each bounded. The
// slice is a copy when anything changed.
func BoundFindings(fs []Finding) []Finding {
	if len(fs) == 0 {
		return fs
	}
	out := make([]Finding, 0, min(len(fs), MaxFindings))
	for i, f := range fs {
		if i == MaxFindings {
			break
		}
		out = append(out, boundFinding(f))
	}
	return out
}

// Bounded returns r with every string cut to its bound and at most
// MaxFindings findings.
func (r AuditRecord) Bounded() AuditRecord {
	r.Kind = Clip(r.Kind, MaxFieldBytes)
	r.Client = Clip(r.Client, MaxFieldBytes)
	r.UserAgent = Clip(r.UserAgent, MaxFieldBytes)
	r.Image = Clip(r.Image, MaxNameBytes)
	r.Digest = digestField(r.Digest)
	r.Findings = BoundFindings(r.Findings)
	r.Reason = Clip(r.Reason, MaxReasonBytes)
	r.Actor = Clip(r.Actor, MaxFieldBytes)
	r.Subject = Clip(r.Subject, MaxNameBytes)
	r.Action = Clip(r.Action, MaxFieldBytes)
	return r
}

// digestField keeps a digest to MaxDigestBytes; a longer one is cut and
// marked.
func digestField[D ~string](d D) D { return D(Clip(string(d), MaxDigestBytes)) }

// EncodeAudit returns r, bounded, as one JSON line of at most MaxAuditRecordBytes.
// JSON escaping can make a bounded record longer than its strings (a
// control character takes six bytes), so a record still too long loses
// findings, then has its strings cut shorter; what was dropped is said in
// its reason.
func EncodeAudit(r AuditRecord) ([]byte, error) {
	r = r.Bounded()
	for {
		b, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("audit record: %w", err)
		}
		if len(b) < MaxAuditRecordBytes {
			return append(b, '\n'), nil
		}
		switch {
		case len(r.Findings) > 0:
			r.Reason = Clip(fmt.Sprintf("%s (%d findings not recorded: record too long)", Clip(r.Reason, MaxReasonBytes/2), len(r.Findings)), MaxReasonBytes)
			r.Findings = r.Findings[:len(r.Findings)/2]
		case len(r.Reason) > 64 || len(r.UserAgent) > 64 || len(r.Image) > 64 || len(r.Subject) > 64 || len(r.Client) > 64 || len(r.Actor) > 64:
			for _, s := range []*string{&r.Reason, &r.UserAgent, &r.Image, &r.Subject, &r.Client, &r.Actor, &r.Kind, &r.Action} {
				*s = Clip(*s, 64)
			}
		default:
			return nil, fmt.Errorf("audit record: %w: %d bytes after cutting every field", ErrInvalid, len(b))
		}
	}
}
