package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// request is one registry API call, described well enough to build its URL
// and to report an error about it.
type request struct {
	method string
	repo   string
	kind   string // "manifest", "blob", "tags"
	ref    string // tag or digest; empty for tags
	path   string // below /v2/<repo>/
	query  url.Values
	accept []string
}

var errHeaderTimeout = errors.New("timed out waiting for response headers")

// send performs q with auth, retries and the header timeout. It returns the
// response only for a 2xx status; any other status becomes an *Error. The
// response body must be closed; closing it releases the request's context.
func (r *Registry) send(ctx context.Context, q request) (*http.Response, error) {
	if err := (registry.Reference{Registry: r.base.Host, Repository: q.repo}).ValidateRepository(); err != nil {
		return nil, r.errorFor(q, 0, fmt.Errorf("%w: %w", errInvalidReference, err))
	}
	u := *r.base
	u.Path = r.base.Path + "/v2/" + q.repo + "/" + q.path
	u.RawQuery = q.query.Encode()
	ctx = auth.AppendRepositoryScope(ctx, registry.Reference{Registry: r.base.Host, Repository: q.repo}, auth.ActionPull)

	for attempt := 0; ; attempt++ {
		resp, err := r.try(ctx, q, u.String())
		retryAfter := time.Duration(0)
		switch {
		case err != nil:
			if ctx.Err() != nil || !transient(err) {
				return nil, err
			}
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			return resp, nil
		default:
			e := r.responseError(q, resp)
			if !retryStatus(resp.StatusCode) {
				return nil, e
			}
			err, retryAfter = e, e.RetryAfter
		}
		if attempt >= r.retries {
			return nil, err
		}
		delay := r.backoff << attempt
		if retryAfter > 0 && retryAfter <= 5*time.Second {
			delay = retryAfter
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, r.errorFor(q, 0, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// try sends one attempt. The header timeout cancels the attempt's context
// if no response headers arrive in time; once they have, the context lives
// until the body is closed.
func (r *Registry) try(ctx context.Context, q request, u string) (*http.Response, error) {
	// Waiting for a slot is not waiting for headers: the header timeout
	// starts once the request can go.
	release, err := r.slots.acquire(ctx)
	if err != nil {
		return nil, r.errorFor(q, 0, fmt.Errorf("waiting for a connection slot: %w", err))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	done := func(cause error) {
		cancel(cause)
		release()
	}
	var timer *time.Timer
	if r.timeout > 0 {
		timer = time.AfterFunc(r.timeout, func() { cancel(errHeaderTimeout) })
	}
	req, err := http.NewRequestWithContext(ctx, q.method, u, nil)
	if err != nil {
		done(nil)
		return nil, r.errorFor(q, 0, err)
	}
	if len(q.accept) > 0 {
		req.Header.Set("Accept", strings.Join(q.accept, ", "))
	}
	resp, err := r.client.Do(req)
	if timer != nil && !timer.Stop() {
		if err == nil {
			resp.Body.Close()
		}
		done(nil)
		return nil, r.errorFor(q, 0, fmt.Errorf("%w after %s: %w", errHeaderTimeout, r.timeout, context.DeadlineExceeded))
	}
	if err != nil {
		done(nil)
		return nil, r.transportError(q, err)
	}
	r.observe(resp)
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, done: done}
	return resp, nil
}

func retryStatus(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

// transient reports whether a failed attempt is worth repeating: the
// connection failed or headers did not arrive, as opposed to an auth,
// validation or redirect-policy failure.
func transient(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 0 {
		return false
	}
	if errors.Is(e.Err, errForbiddenAddress) {
		return false // the same answer would lead to the same address
	}
	if errors.Is(e.Err, errHeaderTimeout) {
		return true
	}
	if errors.Is(e.Err, io.EOF) || errors.Is(e.Err, io.ErrUnexpectedEOF) {
		return true // connection closed before the response
	}
	var netErr net.Error
	var opErr *net.OpError
	return errors.As(e.Err, &opErr) || (errors.As(e.Err, &netErr) && netErr.Timeout())
}

// cancelOnClose releases a request's context and its connection slot when
// its body is closed (once, however often Close is called).
type cancelOnClose struct {
	io.ReadCloser
	done func(error)
	once sync.Once
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(func() { c.done(nil) })
	return err
}
