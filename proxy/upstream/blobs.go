package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
)

// DefaultIdleTimeout bounds the time a blob body may go without sending a
// byte (Config.IdleTimeout).
const DefaultIdleTimeout = 30 * time.Second

// ErrIdle says that an upstream body sent nothing for longer than the idle
// timeout: the download is abandoned and its connection slot freed.
var ErrIdle = errors.New("upstream sent no bytes")

// Blob opens a blob download, following redirects to other hosts (CDNs)
// without forwarding the registry's Authorization header there. It does not
// verify the digest: the caller streams the body through its verifier and
// must Close it. The size is the declared Content-Length, or -1 if unknown.
// A body that sends nothing for the idle timeout fails its next Read with
// ErrIdle: a stalled upstream must not hold a connection slot for good.
func (r *Registry) Blob(ctx context.Context, repo string, dgst digest.Digest) (io.ReadCloser, int64, error) {
	q := request{method: http.MethodGet, repo: repo, kind: "blob", ref: dgst.String(), path: "blobs/" + dgst.String()}
	if err := dgst.Validate(); err != nil {
		return nil, 0, r.errorFor(q, 0, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	resp, err := r.send(ctx, q)
	if err != nil {
		cancel(nil)
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel(nil)
		return nil, 0, r.errorFor(q, resp.StatusCode, errUnexpectedStatus)
	}
	if r.idleTimeout <= 0 {
		return &cancelBody{ReadCloser: resp.Body, cancel: cancel}, resp.ContentLength, nil
	}
	return newIdleBody(resp.Body, r.idleTimeout, cancel, r.errorFor(q, 0, nil)), resp.ContentLength, nil
}

// cancelBody ends the download's context when the body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

// idleBody cancels the download when a Read waits idle for a byte: the
// transport then closes the connection and the blocked Read returns. Only
// time spent inside Read counts, so a consumer that is slow to ask (the
// scanner is busy) never makes the upstream look stalled.
type idleBody struct {
	rc      io.ReadCloser
	idle    time.Duration
	timer   *time.Timer
	cancel  context.CancelCauseFunc
	expired atomic.Bool
	what    *Error // names the download in the error
	once    sync.Once
}

func newIdleBody(rc io.ReadCloser, idle time.Duration, cancel context.CancelCauseFunc, what *Error) *idleBody {
	b := &idleBody{rc: rc, idle: idle, cancel: cancel, what: what}
	b.timer = time.AfterFunc(idle, func() {
		b.expired.Store(true)
		cancel(ErrIdle)
	})
	b.timer.Stop()
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.expired.Load() {
		return 0, b.idleError()
	}
	b.timer.Reset(b.idle)
	n, err := b.rc.Read(p)
	if !b.timer.Stop() && b.expired.Load() {
		return n, b.idleError()
	}
	return n, err
}

func (b *idleBody) idleError() error {
	e := *b.what
	e.Err = fmt.Errorf("%w for %s", ErrIdle, b.idle)
	return &e
}

func (b *idleBody) Close() error {
	err := b.rc.Close()
	b.once.Do(func() {
		b.timer.Stop()
		b.cancel(nil)
	})
	return err
}
