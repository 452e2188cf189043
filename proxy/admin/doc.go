// Package admin is pullgate's operator's window: the /admin/ page, its
// JSON API and live stream, token authentication with its anti-forgery
// checks and login limits, the live view of recent decisions, and the
// operator's overrides.
//
// admin never serves registry content and never changes a verdict. The
// one way it changes what pullgate serves is an override, and an override
// is written to the audit log before it is stored: a change that cannot
// be audited is not made.
package admin
