package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
)

// apiError is an error the client sees: an OCI error code (whose table in
// errcode holds the HTTP status) and a message a person can act on.
type apiError struct {
	Code       errcode.ErrorCode
	Message    string
	RetryAfter time.Duration
}

func (e *apiError) Error() string { return e.Code.String() + ": " + e.Message }

func errDenied(msg string) error { return &apiError{Code: errcode.ErrorCodeDenied, Message: msg} }

func errNotFound(msg string) error {
	return &apiError{Code: errcode.ErrorCodeNameUnknown, Message: msg}
}

func errNameInvalid(name string) error {
	return &apiError{Code: errcode.ErrorCodeNameInvalid, Message: fmt.Sprintf("invalid repository name %q", truncate(name, 80))}
}

func errDigestInvalid(ref string) error {
	return &apiError{Code: errcode.ErrorCodeDigestInvalid, Message: fmt.Sprintf("invalid digest %q", truncate(ref, 80))}
}

func errManifestInvalidRef(ref string) error {
	return &apiError{Code: errcode.ErrorCodeManifestInvalid, Message: fmt.Sprintf("invalid tag or digest %q", truncate(ref, 80))}
}

func errUnsupported(msg string) error {
	return &apiError{Code: errcode.ErrorCodeUnsupported, Message: msg}
}

func errUnavailable(msg string) error {
	return &apiError{Code: errcode.ErrorCodeUnavailable, Message: msg}
}

// errStoreUnavailable answers a failure of the blob store with what failed.
// The store's own error stays in the log: driver errors name files on the
// server.
func errStoreUnavailable(what string) error {
	return errUnavailable("pullgate: " + what + ": blob store unavailable; retry later")
}

func errStillScanning(msg string, retry time.Duration) error {
	return &apiError{Code: errcode.ErrorCodeTooManyRequests, Message: msg, RetryAfter: retry}
}

// refusalError is what the client gets for a decision that refuses, nil
// for one that serves.
func refusalError(d gate.Decision) error {
	if !d.Refused() {
		return nil
	}
	return apiErrorOf(d.Kind, d.Message, d.Where, d.Cause, d.RetryAfter)
}

// gateError is what the client gets for an error from the gate: a
// refusal or a decision in its OCI terms, anything else as it is.
func gateError(err error) error {
	var r *gate.Refusal
	var d gate.Decision
	switch {
	case errors.As(err, &r):
		return apiErrorOf(r.Kind, r.Message, r.Message, r.Cause, r.RetryAfter)
	case errors.As(err, &d):
		return refusalError(d)
	}
	return err
}

// apiErrorOf gives each kind of refusal its one OCI error code.
func apiErrorOf(kind gate.Kind, msg, where string, cause error, retry time.Duration) error {
	switch kind {
	case gate.Invalid:
		return &apiError{Code: errcode.ErrorCodeManifestInvalid, Message: msg}
	case gate.Unavailable:
		return errUnavailable(msg)
	case gate.Retry:
		return errStillScanning(msg, retry)
	case gate.Upstream:
		return upstreamError(where, cause)
	case gate.UnknownManifest:
		return &apiError{Code: errcode.ErrorCodeManifestUnknown, Message: msg}
	case gate.UnknownBlob:
		return &apiError{Code: errcode.ErrorCodeBlobUnknown, Message: msg}
	}
	return errDenied(msg)
}

// writeError answers with the OCI error body on GET and with the bare status
// on HEAD, where a body is not allowed.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := asAPIError(err)
	status := ae.Code.Descriptor().HTTPStatusCode
	if ae.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((ae.RetryAfter+time.Second-1)/time.Second)))
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	msg := ae.Message
	if ae.Code == errcode.ErrorCodeUnavailable || ae.Code == errcode.ErrorCodeUnknown {
		msg = withoutServerPaths(msg)
	}
	body, _ := json.Marshal(errcode.Errors{ae.Code.WithMessage(msg)})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// asAPIError turns any error into what the client sees. Errors that are not
// already decided become UNKNOWN (500) with the error's public text.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return &apiError{Code: errcode.ErrorCodeUnknown, Message: "pullgate: " + publicText(err)}
}

// upstreamError says, in the client's terms and pullgate's own words, why
// content could not be had: a 429 upstream stays a 429 with its
// Retry-After, anything else is 503. err is often an ingest error wrapping
// an *upstream.Error; the client sees the latter's Public description.
func upstreamError(what string, err error) error {
	var ue *upstream.Error
	if errors.As(err, &ue) && ue.StatusCode == http.StatusTooManyRequests {
		return &apiError{Code: errcode.ErrorCodeTooManyRequests, Message: what + ": upstream rate limit: " + publicText(err), RetryAfter: ue.RetryAfter}
	}
	if errors.Is(err, upstream.ErrBusy) {
		// Every connection slot stayed taken: pullgate is busy, not broken.
		return &apiError{Code: errcode.ErrorCodeTooManyRequests, Message: what + ": " + publicText(err), RetryAfter: busyRetryAfter}
	}
	return errUnavailable(what + ": " + publicText(err))
}

// publicText is err's text as a client may read it. Whatever an upstream
// sent (an error body, a message, the answer of a service a redirect led
// to) and the URLs and addresses involved are in an *upstream.Error's own
// text, which is replaced by its Public description; and no server path
// (the data directory's files) is shown.
func publicText(err error) string {
	s := err.Error()
	var ue *upstream.Error
	if errors.As(err, &ue) {
		inner := ue.Error()
		if i := strings.LastIndex(s, inner); i >= 0 {
			s = s[:i] + ue.Public() + s[i+len(inner):]
		} else {
			// Wrapped in a way that reworded it: keep nothing of it.
			s = ue.Public()
		}
	}
	return withoutServerPaths(s)
}

// serverPath matches an absolute file path (or the path of a URL) in an
// error's text: after a space, quote, bracket or colon, a slash and what
// follows up to the next space, quote, bracket or colon.
var serverPath = regexp.MustCompile(`(^|[\s"'(\[=:])/[^\s"'()\[\]:,;]+`)

// withoutServerPaths replaces file paths in a client message: where
// pullgate keeps its data is none of the client's business. Only messages
// about failures pass through it; refusals quote paths inside the image
// (/usr/bin/xmrig), which the client must see.
func withoutServerPaths(s string) string {
	return serverPath.ReplaceAllString(s, "$1[path]")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
