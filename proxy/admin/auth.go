package admin

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
	"time"

	"github.com/pullgate/pullgate/storage"
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
	// known: the token starts as a configured token does (it may still be
	// wrong further on).
	known bool
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

// tokens holds the hashes of the configured tokens.
type tokens struct {
	admin, readonly [32]byte
	hasAdmin, hasRO bool
	// Hashes of each token's first tokenPrefix bytes: a request whose token
	// starts as a configured one is not refused for its address's failures
	// (see loginLimiter).
	adminPrefix, roPrefix [32]byte
}

// tokenPrefix is how much of a token vouches for its sender when its
// address is locked out: guessing 8 characters of a token is as hopeless
// as guessing a token.
const tokenPrefix = 8

func prefixHash(token string) [32]byte {
	if len(token) > tokenPrefix {
		token = token[:tokenPrefix]
	}
	return sha256.Sum256([]byte(token))
}

func newTokens(adminToken, readonlyToken string) tokens {
	return tokens{
		admin: sha256.Sum256([]byte(adminToken)), hasAdmin: adminToken != "",
		readonly: sha256.Sum256([]byte(readonlyToken)), hasRO: readonlyToken != "",
		adminPrefix: prefixHash(adminToken), roPrefix: prefixHash(readonlyToken),
	}
}

func (a tokens) enabled() bool { return a.hasAdmin || a.hasRO }

// authenticate reads a bearer token, or the password of HTTP basic auth
// with any user name, and compares it with both tokens in constant time.
func (a tokens) authenticate(r *http.Request) (principal, bool) {
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
	ph := prefixHash(token)
	p.known = len(token) >= tokenPrefix &&
		(subtle.ConstantTimeCompare(ph[:], a.adminPrefix[:])&boolInt(a.hasAdmin)|
			subtle.ConstantTimeCompare(ph[:], a.roPrefix[:])&boolInt(a.hasRO)) == 1
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

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
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
func (c *Console) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.auth.enabled() {
			adminError(w, r, http.StatusNotFound, "the admin page is disabled: set an admin token (--admin-token, PULLGATE_ADMIN_TOKEN or admin.token)")
			return
		}
		client := clientOf(r)
		p, ok := c.auth.authenticate(r)
		key := ""
		if p.key != ([32]byte{}) {
			key = tokenKey(p)
		}
		// Asked whatever authenticate said, so that a refusal tells
		// nothing about the token.
		if wait := c.logins.wait(client, key, p.known); wait > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			adminError(w, r, http.StatusTooManyRequests, "too many failed logins from this address or with this token; try again later")
			return
		}
		if !ok {
			if r.Header.Get("Authorization") != "" {
				c.opts.Metrics.AdminAuthFailed()
				c.logins.fail(client, key)
				c.log.Warn("admin: authentication failed", "client", storage.Clip(client, storage.MaxFieldBytes),
					"path", storage.Clip(r.URL.Path, storage.MaxFieldBytes))
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
				c.log.Warn("admin: change refused", "client", storage.Clip(clientOf(r), storage.MaxFieldBytes),
					"path", storage.Clip(r.URL.Path, storage.MaxFieldBytes), "reason", msg)
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

// clientOf names the client for logs: its address without the port.
func clientOf(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}
