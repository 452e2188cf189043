package events

import (
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/storage"
)

// Event is one decision pullgate made about a pull, or about a stored blob
// (a retroactive block): the unit of its logs, metrics, audit log, admin
// page and alerts. It is made once, where the decision is, and handed to
// every Sink.
type Event struct {
	Time      time.Time         `json:"time"`
	Client    string            `json:"client"`
	UserAgent string            `json:"user_agent"`
	Image     string            `json:"image"`
	Digest    digest.Digest     `json:"digest"`
	Decision  verdict.Outcome   `json:"decision"`
	Findings  []verdict.Finding `json:"findings,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Latency   time.Duration     `json:"latency"` // nanoseconds
}

// Bounded cuts every string of ev to its bound (storage.AuditRecord's),
// marking what was cut, before it is logged, kept, published, written or
// sent: most of it comes from the request (user agent, image name) or from
// upstream content (file paths inside a layer), and an unauthenticated
// client must not be able to fill memory, the audit log or Redis with it.
func (ev Event) Bounded() Event {
	ev.Client = storage.Clip(ev.Client, storage.MaxFieldBytes)
	ev.UserAgent = storage.Clip(ev.UserAgent, storage.MaxFieldBytes)
	ev.Image = storage.Clip(ev.Image, storage.MaxNameBytes)
	ev.Digest = digest.Digest(storage.Clip(string(ev.Digest), storage.MaxDigestBytes))
	ev.Findings = storage.BoundFindings(ev.Findings)
	ev.Reason = storage.Clip(ev.Reason, storage.MaxReasonBytes)
	return ev
}

// Sink takes events: the log, the metrics, the live view, the bus to the
// other replicas, the audit log and the webhook are each one. Emit must not
// block the pull that made the event: a sink that does slow work queues it.
type Sink interface {
	Emit(Event)
}

// SinkFunc makes a function a Sink.
type SinkFunc func(Event)

// Emit calls f.
func (f SinkFunc) Emit(ev Event) { f(ev) }
