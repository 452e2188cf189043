package testregistry

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"
)

// Fault describes how the registry misbehaves for one digest (a blob, or a
// manifest whether asked for by digest or by a tag that points at it).
//
// Status faults are answered where the client asks: at the registry for blob
// GETs (before the redirect) and for manifests. Byte faults (Corrupt,
// Truncate, Delay, Block, BytesPerSecond) apply where the bytes are served:
// at the CDN for blobs and at the
// registry for manifests. Several byte faults combine.
type Fault struct {
	// Status, if set, is answered instead of the content, with a
	// distribution error body (429 TOOMANYREQUESTS, 5xx UNKNOWN, ...).
	Status int
	// RetryAfter, with Status, sets the Retry-After header (whole seconds).
	RetryAfter time.Duration

	// Corrupt serves bytes of the right length whose digest does not match.
	Corrupt bool
	// Truncate announces the full Content-Length, sends half of the body and
	// cuts the connection.
	Truncate bool
	// Delay holds the response for this long before the headers are sent.
	Delay time.Duration
	// Block holds the response, before the headers, until the channel is
	// closed (or the client goes away, or the test ends).
	Block <-chan struct{}
	// BytesPerSecond throttles the body to about this rate, sent in 10 ms
	// steps.
	BytesPerSecond int

	// Times applies the fault to this many requests only, then clears it;
	// 0 means until cleared.
	Times int
}

type faultEntry struct {
	f    Fault
	left int // requests still to fault; 0 = unlimited
}

func (f Fault) isStatus() bool { return f.Status != 0 }

// Fault sets the fault for dgst, replacing any earlier one. The zero Fault
// clears it.
func (r *Registry) Fault(dgst digest.Digest, f Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f == (Fault{}) {
		delete(r.faults, dgst)
		return
	}
	r.faults[dgst] = &faultEntry{f: f, left: f.Times}
}

// ClearFaults removes every fault.
func (r *Registry) ClearFaults() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.faults)
}

// takeFault consumes one application of dgst's fault, if it has one that
// want accepts.
func (r *Registry) takeFault(dgst digest.Digest, want func(Fault) bool) *Fault {
	if dgst == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.faults[dgst]
	if e == nil || !want(e.f) {
		return nil
	}
	if e.left > 0 {
		e.left--
		if e.left == 0 {
			delete(r.faults, dgst)
		}
	}
	f := e.f
	return &f
}

func anyFault(Fault) bool      { return true }
func statusFault(f Fault) bool { return f.isStatus() }
func byteFault(f Fault) bool   { return !f.isStatus() }

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": msg}},
	})
}

func (f *Fault) writeStatus(w http.ResponseWriter) {
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(f.RetryAfter.Round(time.Second)/time.Second)))
	}
	code := "UNKNOWN"
	switch f.Status {
	case http.StatusTooManyRequests:
		code = "TOOMANYREQUESTS"
	case http.StatusNotFound:
		code = "MANIFEST_UNKNOWN"
	case http.StatusUnauthorized:
		code = "UNAUTHORIZED"
	case http.StatusForbidden:
		code = "DENIED"
	}
	writeError(w, f.Status, code, "testregistry: injected fault "+http.StatusText(f.Status))
}

// serveFault writes data (whose other headers are already set) through the
// byte faults of f.
func (r *Registry) serveFault(w http.ResponseWriter, req *http.Request, f *Fault, data []byte) {
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			return
		case <-r.closed:
			t.Stop()
			return
		}
	}
	if f.Block != nil {
		select {
		case <-f.Block:
		case <-req.Context().Done():
			return
		case <-r.closed:
			return
		}
	}
	if f.Corrupt {
		bad := make([]byte, len(data))
		for i, b := range data {
			bad[i] = ^b
		}
		data = bad
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodHead {
		return
	}
	if f.Truncate {
		data = data[:len(data)/2]
	}
	if f.BytesPerSecond > 0 {
		// Small steps, as a network link delivers bytes: a client that
		// works on them as they come is not handed tenths of a second of
		// data at once.
		const step = 10 * time.Millisecond
		chunk := max(f.BytesPerSecond/int(time.Second/step), 1)
		tick := time.NewTicker(step)
		defer tick.Stop()
		rc := http.NewResponseController(w)
		for len(data) > 0 {
			n := min(chunk, len(data))
			if _, err := w.Write(data[:n]); err != nil {
				return
			}
			_ = rc.Flush()
			data = data[n:]
			if len(data) == 0 {
				break
			}
			select {
			case <-tick.C:
			case <-req.Context().Done():
				return
			case <-r.closed:
				return
			}
		}
	} else {
		_, _ = w.Write(data)
	}
	if f.Truncate {
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
}
