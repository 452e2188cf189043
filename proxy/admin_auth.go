package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// role is what an admin credential may do.
type role int

const (
	roleNone     role = iota
	roleReadOnly      // look
	roleAdmin         // look and change overrides
)

func (r role) String() string {
	return [...]string{"none", "readonly", "admin"}[r]
}

// principal is who made an admin request. It holds a hash of the token,
// never the token.
type principal struct {
	role   role
	user   string // basic auth user name, as given (not authenticated)
	bearer bool   // the token came in an Authorization: Bearer header
	key    [32]byte
}

// actor names the principal in overrides and the audit log.
func (p principal) actor() string {
	if p.user != "" {
		return p.role.String() + ":" + p.user
	}
	return p.role.String()
}

// csrf is the anti-forgery token of the page: an HMAC keyed by the
// principal's token, so it is the same on every replica and after a
// restart, and says nothing about the token.
func (p principal) csrf() string {
	mac := hmac.New(sha256.New, p.key[:])
	mac.Write([]byte("pullgate admin csrf v1"))
	return hex.EncodeToString(mac.Sum(nil))
}

type principalKey struct{}

func principalOf(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// adminAuth holds the hashes of the configured tokens.
type adminAuth struct {
	admin, readonly [32]byte
	hasAdmin, hasRO bool
}

func newAdminAuth(adminToken, readonlyToken string) adminAuth {
	return adminAuth{
		admin: sha256.Sum256([]byte(adminToken)), hasAdmin: adminToken != "",
		readonly: sha256.Sum256([]byte(readonlyToken)), hasRO: readonlyToken != "",
	}
}

func (a adminAuth) enabled() bool { return a.hasAdmin || a.hasRO }

// authenticate reads a bearer token, or the password of HTTP basic auth
// with any user name, and compares it with both tokens in constant time.
func (a adminAuth) authenticate(r *http.Request) (principal, bool) {
	var p principal
	var token string
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		token, p.bearer = strings.TrimSpace(t), true
	} else if user, pass, ok := r.BasicAuth(); ok {
		token, p.user = pass, user
	}
	if token == "" {
		return p, false
	}
	p.key = sha256.Sum256([]byte(token))
	isAdmin := subtle.ConstantTimeCompare(p.key[:], a.admin[:]) == 1 && a.hasAdmin
	isRO := subtle.ConstantTimeCompare(p.key[:], a.readonly[:]) == 1 && a.hasRO
	switch {
	case isAdmin:
		p.role = roleAdmin
	case isRO:
		p.role = roleReadOnly
	default:
		return p, false
	}
	if len(p.user) > 64 {
		p.user = p.user[:64]
	}
	return p, true
}

func unsafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// adminGuard authenticates every admin request, and for a change also
// checks the role and (for browsers) the anti-forgery token and origin.
// A failure is answered here; a failed login is logged without the token.
func (s *Server) adminGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.auth.enabled() {
			adminError(w, r, http.StatusNotFound, "the admin page is disabled: set an admin token (--admin-token, PULLGATE_ADMIN_TOKEN or admin.token)")
			return
		}
		client := clientOf(r)
		if wait := s.logins.wait(client); wait > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			adminError(w, r, http.StatusTooManyRequests, "too many failed logins from this address; try again later")
			return
		}
		p, ok := s.auth.authenticate(r)
		if !ok {
			if r.Header.Get("Authorization") != "" {
				s.metrics.adminAuthFailed()
				s.logins.fail(client)
				s.log.Warn("admin: authentication failed", "client", client, "path", r.URL.Path)
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="pullgate admin", charset="UTF-8"`)
			adminError(w, r, http.StatusUnauthorized, "authentication required: an admin token as a bearer token or as the basic auth password")
			return
		}
		if unsafeMethod(r.Method) {
			if p.role != roleAdmin {
				adminError(w, r, http.StatusForbidden, "this token is read-only: changes need the admin token")
				return
			}
			if msg := checkForgery(w, r, p); msg != "" {
				s.log.Warn("admin: change refused", "client", clientOf(r), "path", r.URL.Path, "reason", msg)
				adminError(w, r, http.StatusForbidden, msg)
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// checkForgery refuses a change a browser may have been tricked into
// sending: from another origin, or without the page's anti-forgery token.
// A bearer token is never sent by a browser on its own, so API clients
// need no anti-forgery token.
func checkForgery(w http.ResponseWriter, r *http.Request, p principal) string {
	if p.bearer {
		return ""
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return "cross-site request refused"
	}
	// "null" (a privacy setting, a sandboxed frame) says nothing: the
	// token decides.
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return "request from another origin refused"
		}
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err == nil {
			got = r.PostForm.Get("csrf")
		}
	}
	if got == "" || !hmac.Equal([]byte(got), []byte(p.csrf())) {
		return "missing or wrong anti-forgery (CSRF) token: reload the page"
	}
	return ""
}

// securityHeaders keep the admin page out of frames and limit it to its
// own scripts and styles.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: with no-referrer a browser sends
		// "Origin: null" on the page's own form posts.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// loginLimiter slows down token guessing: an address with maxFailures
// failed logins within failureWindow is refused until the window passes.
type loginLimiter struct {
	mu       sync.Mutex
	failures map[string][]time.Time
}

const (
	maxFailures   = 10
	failureWindow = time.Minute
	// maxTracked bounds the addresses remembered; when full, the oldest
	// records are the first to go.
	maxTracked = 10000
)

// wait is how long client must wait before trying again (0: go ahead).
func (l *loginLimiter) wait(client string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	recent := l.recent(client, time.Now())
	if len(recent) < maxFailures {
		return 0
	}
	return time.Until(recent[0].Add(failureWindow))
}

func (l *loginLimiter) fail(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.failures == nil {
		l.failures = make(map[string][]time.Time)
	}
	if len(l.failures) >= maxTracked {
		for c := range l.failures {
			if len(l.recent(c, now)) == 0 {
				delete(l.failures, c)
			}
		}
		if len(l.failures) >= maxTracked {
			clear(l.failures)
		}
	}
	l.failures[client] = append(l.recent(client, now), now)
}

// recent keeps and returns the client's failures inside the window.
func (l *loginLimiter) recent(client string, now time.Time) []time.Time {
	fs := l.failures[client]
	i := 0
	for i < len(fs) && now.Sub(fs[i]) > failureWindow {
		i++
	}
	fs = fs[i:]
	if len(fs) == 0 {
		delete(l.failures, client)
	} else {
		l.failures[client] = fs
	}
	return fs
}
