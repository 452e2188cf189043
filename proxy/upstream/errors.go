package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

var (
	// ErrDigestMismatch: the bytes received do not hash to the digest asked for.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrTooLarge: a manifest or tag list exceeds its size cap.
	ErrTooLarge = errors.New("response too large")

	// errRedirectRefused: a redirect broke pullgate's redirect rules.
	errRedirectRefused = errors.New("redirect refused")
	// errInvalidReference: a repository, tag or digest is not valid.
	errInvalidReference = errors.New("invalid reference")
)

// maxErrorBody caps how much of an error response is read.
const maxErrorBody = 64 << 10

// Error is a failed upstream call. StatusCode is 0 when no HTTP status was
// received (connection failure, timeout, digest mismatch); Err then says why.
type Error struct {
	Registry string // registry name: "docker.io"
	Method   string // HTTP method: "GET", "HEAD"
	Repo     string // repository: "library/alpine"
	Kind     string // "manifest", "blob" or "tags"
	Ref      string // tag or digest; empty for tags

	StatusCode int
	Code       string // OCI error code from the body, e.g. "MANIFEST_UNKNOWN"
	// Message is upstream's OCI error message or the start of a non-OCI
	// body, for pullgate's log only: it is upstream's text (or whatever a
	// redirect led to), and never goes to a client; see Public.
	Message    string
	RetryAfter time.Duration
	Err        error // underlying cause, if any; errors.Is/As see through it

	secrets []string
}

// Error renders e as
// "docker.io: GET library/alpine manifest sha256:…: 404 MANIFEST_UNKNOWN: manifest unknown".
// Credentials configured for the registry are redacted.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s %s %s", e.Registry, e.Method, e.Repo, e.Kind)
	if e.Ref != "" {
		b.WriteString(" " + e.Ref)
	}
	b.WriteString(":")
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " %d", e.StatusCode)
		if e.Code != "" {
			b.WriteString(" " + e.Code)
		}
		if e.Message != "" || e.Err != nil {
			b.WriteString(":")
		}
	}
	if e.Err != nil {
		b.WriteString(" " + e.Err.Error())
		if e.Message != "" {
			b.WriteString(":")
		}
	}
	if e.Message != "" {
		b.WriteString(" " + e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return redact(b.String(), e.secrets)
}

func (e *Error) Unwrap() error { return e.Err }

// Public describes e in pullgate's own words, fit for an anonymous client:
// "docker.io: library/alpine blob sha256:…: upstream answered 500 Internal
// Server Error". It never carries upstream's body or message, a URL, an
// address or a credential: an upstream, or whatever it redirects to, must
// not be able to put text in front of the client.
func (e *Error) Public() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s %s", e.Registry, e.Repo, e.Kind)
	if e.Ref != "" {
		b.WriteString(" " + e.Ref)
	}
	b.WriteString(": ")
	switch {
	case e.StatusCode != 0:
		fmt.Fprintf(&b, "upstream answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
		if knownCodes[e.Code] {
			b.WriteString(" (" + e.Code + ")")
		}
		if e.RetryAfter > 0 {
			fmt.Fprintf(&b, ", retry after %s", e.RetryAfter)
		}
	case errors.Is(e.Err, errForbiddenAddress):
		b.WriteString("refused to follow upstream to a non-public address (a redirect, token realm or DNS answer)")
	case errors.Is(e.Err, ErrDigestMismatch):
		b.WriteString("upstream content does not match its digest")
	case errors.Is(e.Err, ErrTooLarge):
		b.WriteString("upstream response is over pullgate's size limit")
	case errors.Is(e.Err, ErrBusy), errors.Is(e.Err, ErrIdle):
		b.WriteString(e.Err.Error()) // pullgate's own words, with the configured bound
	case errors.Is(e.Err, errRedirectRefused):
		b.WriteString("refused an upstream redirect")
	case errors.Is(e.Err, errHeaderTimeout), errors.Is(e.Err, context.DeadlineExceeded):
		b.WriteString("upstream did not answer in time")
	case errors.Is(e.Err, context.Canceled):
		b.WriteString("request canceled")
	case errors.Is(e.Err, errInvalidReference), errors.Is(e.Err, digest.ErrDigestInvalidFormat),
		errors.Is(e.Err, digest.ErrDigestInvalidLength), errors.Is(e.Err, digest.ErrDigestUnsupported):
		b.WriteString("invalid repository, tag or digest")
	default:
		b.WriteString("could not reach upstream")
	}
	return redact(b.String(), e.secrets)
}

// knownCodes are the OCI distribution error codes Public repeats; any other
// code in an upstream body is upstream's free text.
var knownCodes = map[string]bool{
	"BLOB_UNKNOWN": true, "BLOB_UPLOAD_INVALID": true, "BLOB_UPLOAD_UNKNOWN": true, "DIGEST_INVALID": true,
	"MANIFEST_BLOB_UNKNOWN": true, "MANIFEST_INVALID": true, "MANIFEST_UNKNOWN": true, "NAME_INVALID": true,
	"NAME_UNKNOWN": true, "SIZE_INVALID": true, "UNAUTHORIZED": true, "DENIED": true, "UNSUPPORTED": true,
	"TOOMANYREQUESTS": true,
}

// IsNotFound reports whether err says the repository, manifest or blob does
// not exist upstream.
func IsNotFound(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case "MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN":
		return true
	}
	return e.StatusCode == http.StatusNotFound
}

// IsRateLimited reports whether upstream answered 429 Too Many Requests;
// the *Error's RetryAfter says how long it asked to wait, if it did.
func IsRateLimited(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.StatusCode == http.StatusTooManyRequests || e.Code == "TOOMANYREQUESTS")
}

// IsUnauthorized reports whether upstream (or its token service) refused
// our credentials or access: 401 or 403.
func IsUnauthorized(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden)
}

// errorFor builds an *Error about q.
func (r *Registry) errorFor(q request, status int, err error) *Error {
	return &Error{
		Registry: r.name, Method: q.method, Repo: q.repo, Kind: q.kind, Ref: q.ref,
		StatusCode: status, Err: err, secrets: r.secrets,
	}
}

// transportError wraps an error from the HTTP client. oras-go reports a
// failed token fetch as an errcode.ErrorResponse; its status and code are
// lifted so callers can tell an auth refusal from a network failure.
func (r *Registry) transportError(q request, err error) *Error {
	e := r.errorFor(q, 0, err)
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) {
		e.StatusCode = resp.StatusCode
		if len(resp.Errors) > 0 {
			e.Code = errorCode(resp.Errors[0].Code)
			e.Message = snippet([]byte(resp.Errors[0].Message))
		}
		e.Err = errors.New("token request failed")
	}
	return e
}

// responseError turns a non-2xx response into an *Error, reading a capped
// amount of its body, and closes the body.
func (r *Registry) responseError(q request, resp *http.Response) *Error {
	defer resp.Body.Close()
	e := r.errorFor(q, resp.StatusCode, nil)
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var oci struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &oci) == nil && len(oci.Errors) > 0 {
		e.Code = errorCode(oci.Errors[0].Code)
		e.Message = snippet([]byte(oci.Errors[0].Message))
	} else if len(body) > 0 {
		e.Message = snippet(body)
	} else {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// errorCode keeps an OCI error code if it is shaped like one (upper case
// letters and underscores, short) and drops any other text in its place.
func errorCode(code string) string {
	code = strings.ToUpper(code)
	if len(code) == 0 || len(code) > 40 || strings.Trim(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != "" {
		return ""
	}
	return code
}

// snippet returns the start of a non-OCI error body, one line, printable,
// with anything shaped like an Authorization value blanked: a careless or
// hostile server may echo the token it was sent.
func snippet(body []byte) string {
	const max = 200
	s := strings.Join(strings.Fields(string(body)), " ")
	s = authValue.ReplaceAllString(s, "$1 [redacted]")
	if len(s) > max {
		s = s[:max]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return s
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now).Round(time.Second)
	}
	return 0
}

var authValue = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+`)

func redact(s string, secrets []string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}
