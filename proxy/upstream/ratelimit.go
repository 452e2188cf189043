package upstream

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RateLimit is the pull budget upstream last reported, from Docker Hub's
// ratelimit-limit and ratelimit-remaining headers ("100;w=21600": 100 pulls
// per 21600 s window). The zero value means none was ever seen.
type RateLimit struct {
	Limit, Remaining int
	Window           time.Duration
	Seen             time.Time
}

// RateLimit returns the last rate-limit headers seen from this registry.
func (r *Registry) RateLimit() RateLimit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rateLimit
}

// observe records rate-limit headers from a registry response (final or a
// redirect hop; a CDN's response carries none and changes nothing).
func (r *Registry) observe(resp *http.Response) {
	limit, lw, okL := parseRateLimit(resp.Header.Get("Ratelimit-Limit"))
	remaining, rw, okR := parseRateLimit(resp.Header.Get("Ratelimit-Remaining"))
	if !okL && !okR {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rl := r.rateLimit
	if okL {
		rl.Limit = limit
		rl.Window = lw
	}
	if okR {
		rl.Remaining = remaining
		if rw > 0 {
			rl.Window = rw
		}
	}
	rl.Seen = time.Now()
	r.rateLimit = rl
}

// parseRateLimit parses "100;w=21600" into 100 and 6h.
func parseRateLimit(v string) (int, time.Duration, bool) {
	if v == "" {
		return 0, 0, false
	}
	parts := strings.Split(v, ";")
	n, err := strconv.Atoi(strings.TrimSpace(parts[0]))
	if err != nil || n < 0 {
		return 0, 0, false
	}
	var window time.Duration
	for _, p := range parts[1:] {
		k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || strings.TrimSpace(k) != "w" {
			continue
		}
		if secs, err := strconv.Atoi(strings.TrimSpace(val)); err == nil && secs > 0 {
			window = time.Duration(secs) * time.Second
		}
	}
	return n, window, true
}
