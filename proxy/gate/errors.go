package gate

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/pullgate/pullgate/proxy/upstream"
)

// errTransient marks an ingest failure that says nothing about the content
// (upstream down, wrong bytes on the wire): refused now, never cached.
var errTransient = errors.New("transient")

// errNoUpstream: a rescan found a blob gone from the store.
var errNoUpstream = errors.New("not in the store, and no upstream to fetch it from")

func refusal(kind Kind, format string, args ...any) *Refusal {
	return &Refusal{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// storeUnavailable refuses for a failure of the blob store, saying what
// failed. The store's own error stays in the log: driver errors name files
// on the server.
func storeUnavailable(what string) *Refusal {
	return refusal(Unavailable, "pullgate: %s: blob store unavailable; retry later", what)
}

// upstreamFailure refuses because upstream failed while doing what.
func upstreamFailure(what string, err error) *Refusal {
	return &Refusal{Kind: Upstream, Message: what, Cause: err}
}

// stillScanning is the hold's own answer: come back after retry.
func stillScanning(msg string, retry time.Duration) *Refusal {
	return &Refusal{Kind: Retry, Message: msg, RetryAfter: retry}
}

// confirmError words a failed confirmation: upstream answering that it
// does not have the content there (any client error but a rate limit) is
// "unknown", 404; upstream failing to answer is 503 (or 429 for its limit).
func confirmError(err error, unknown Kind, what string) *Refusal {
	var ue *upstream.Error
	if upstream.IsNotFound(err) || (errors.As(err, &ue) && ue.StatusCode >= 400 && ue.StatusCode < 500 && ue.StatusCode != http.StatusTooManyRequests) {
		return refusal(unknown, "pullgate: %s: not found upstream in that repository", what)
	}
	return upstreamFailure(fmt.Sprintf("pullgate: confirm %s with upstream", what), err)
}
