// Package admintest lets tests talk to pullgate as its clients do: a
// request with its headers (a gateway client's Host among them), to the
// admin page with a token as a bearer or as the basic auth password, and
// the page's anti-forgery token read from the page.
//
// It is for tests only: its tokens are published here, and it must never
// be imported by code that serves.
package admintest
