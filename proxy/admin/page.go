package admin

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/storage"
)

//go:embed web/*.html
var pageFS embed.FS

//go:embed web/static
var staticFS embed.FS

// staticFiles serves web/static under /admin/static/.
var staticFiles = func() http.Handler {
	sub, err := fs.Sub(staticFS, "web")
	if err != nil {
		panic(err)
	}
	return http.FileServer(http.FS(sub))
}()

var pageTemplate = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"short": shortID,
	"bytes": humanBytes,
	"percent": func(f float64) string {
		return strconv.FormatFloat(100*f, 'f', 0, 64) + "%"
	},
	"ago":   ago,
	"clock": func(t time.Time) string { return t.Local().Format("15:04:05") },
	"latency": func(d time.Duration) string {
		if d < time.Millisecond {
			return "<1ms"
		}
		if d < time.Second {
			return d.Round(time.Millisecond).String()
		}
		return d.Round(100 * time.Millisecond).String()
	},
	"trunc": storage.Clip,
	"clients": func(m map[string]int) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
		}
		return strings.Join(parts, ", ")
	},
	"decisionClass": class,
}).ParseFS(pageFS, "web/*.html"))

// pageData is what the admin page shows.
type pageData struct {
	Status         Status
	Pulls          []events.Event
	Blocked        []BlockedImage
	Scans          []gate.FlightInfo
	Overrides      []storage.Override
	OverridesError string
	Audit          []storage.AuditRecord
	AuditError     string
	CSRF           string
	Actor          string
	CanWrite       bool
	Form           formState
}

// formState is the override form: what was typed, and what came of it.
type formState struct {
	Subject, Action, Reason string
	Done, Error             string
}

func (c *Console) pageData(ctx context.Context) pageData {
	p := principalOf(ctx)
	d := pageData{
		Status:   c.status(ctx),
		Pulls:    c.opts.Live.Recent(50),
		Blocked:  c.blockedWithOverrides(ctx),
		Scans:    c.opts.Gate.Scans(),
		CSRF:     p.csrf(),
		Actor:    p.actor(),
		CanWrite: p.role == roleAdmin,
	}
	var err error
	if d.Overrides, err = c.opts.Overrides.Overrides(ctx); err != nil {
		d.OverridesError = "verdict store: " + err.Error()
	}
	if d.Audit, err = c.queryAudit(ctx, storage.AuditQuery{Kind: storage.AuditOverride, Limit: 10}); err != nil {
		d.AuditError = "audit log: " + err.Error()
	}
	return d
}

func (c *Console) render(w http.ResponseWriter, status int, name string, d pageData) {
	var buf bytes.Buffer
	if err := pageTemplate.ExecuteTemplate(&buf, name, d); err != nil {
		c.log.Error("admin: render page", "err", err)
		http.Error(w, "pullgate: render page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// page serves the whole page; ?subject=…&action=… fills in the form
// (the blocked list's "Allow…" links), ?done=… says what the last form
// post did.
func (c *Console) page(w http.ResponseWriter, r *http.Request) {
	d := c.pageData(r.Context())
	q := r.URL.Query()
	d.Form = formState{Subject: q.Get("subject"), Action: q.Get("action"), Done: q.Get("done")}
	c.render(w, http.StatusOK, "page", d)
}

// fragment serves the live part of the page, which the page's script
// fetches on each server-sent event.
func (c *Console) fragment(w http.ResponseWriter, r *http.Request) {
	c.render(w, http.StatusOK, "live", c.pageData(r.Context()))
}

func (c *Console) formOverride(w http.ResponseWriter, r *http.Request) {
	req := OverrideRequest{Subject: r.PostFormValue("subject"), Action: r.PostFormValue("action"), Reason: r.PostFormValue("reason")}
	list, err := c.setOverride(r.Context(), principalOf(r.Context()), req)
	if err != nil {
		d := c.pageData(r.Context())
		d.Form = formState{Subject: req.Subject, Action: req.Action, Reason: req.Reason, Error: err.Error()}
		c.render(w, statusOf(err), "page", d)
		return
	}
	done := fmt.Sprintf("%s override saved for %s", list[0].Action, list[0].Subject)
	if len(list) > 1 {
		done += fmt.Sprintf(" and %d of its blobs", len(list)-1)
	}
	http.Redirect(w, r, "/admin/?done="+url.QueryEscape(done)+"#overrides", http.StatusSeeOther)
}

func (c *Console) formDelete(w http.ResponseWriter, r *http.Request) {
	removed, err := c.removeOverride(r.Context(), principalOf(r.Context()), r.PostFormValue("subject"))
	if err != nil {
		d := c.pageData(r.Context())
		d.Form.Error = err.Error()
		c.render(w, statusOf(err), "page", d)
		return
	}
	done := "override removed from " + strings.Join(removed, ", ")
	http.Redirect(w, r, "/admin/?done="+url.QueryEscape(done)+"#overrides", http.StatusSeeOther)
}

// shortID shortens "sha256:0123…" to "sha256:0123456789ab".
func shortID(s string) string {
	if algo, hex, ok := strings.Cut(s, ":"); ok && len(hex) > 12 {
		return algo + ":" + hex[:12]
	}
	if len(s) > 19 {
		return s[:19]
	}
	return s
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h ago"
	}
	return t.UTC().Format("2006-01-02")
}
