package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
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
	body, _ := json.Marshal(errcode.Errors{ae.Code.WithMessage(ae.Message)})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// asAPIError turns any error into what the client sees. Errors that are not
// already decided become UNKNOWN (500) with the error's text, which never
// holds credentials (upstream errors are built without them).
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return &apiError{Code: errcode.ErrorCodeUnknown, Message: "pullgate: " + err.Error()}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
