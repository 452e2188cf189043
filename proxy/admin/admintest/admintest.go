package admintest

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// The tokens tests configure.
const (
	AdminToken    = "admin-token-0123456789abcdef"
	ReadOnlyToken = "readonly-token-0123456789abcdef"
)

// Request sends method path to base with client (nil: a plain one) and
// returns the response and its body. auth is "bearer:TOKEN",
// "basic:USER:TOKEN" or "" for none; hdr are extra header pairs ("Host"
// sets the request's host, as a gateway's client would send it). A
// redirect is returned, not followed.
func Request(t testing.TB, client *http.Client, base, method, path, auth string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case strings.HasPrefix(auth, "bearer:"):
		req.Header.Set("Authorization", "Bearer "+strings.TrimPrefix(auth, "bearer:"))
	case strings.HasPrefix(auth, "basic:"):
		user, pass, _ := strings.Cut(strings.TrimPrefix(auth, "basic:"), ":")
		req.SetBasicAuth(user, pass)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if http.CanonicalHeaderKey(hdr[i]) == "Host" {
			req.Host = hdr[i+1] // the client sends req.Host, not a Host header
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	var c http.Client
	if client != nil {
		c = *client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([0-9a-f]+)">`)

// CSRF reads the anti-forgery token from the page at base, as a browser
// would.
func CSRF(t testing.TB, client *http.Client, base, auth string) string {
	t.Helper()
	resp, body := Request(t, client, base, "GET", "/admin/", auth, nil)
	m := csrfMeta.FindSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("GET /admin/: %d, no csrf token in %.300q", resp.StatusCode, body)
	}
	return string(m[1])
}
