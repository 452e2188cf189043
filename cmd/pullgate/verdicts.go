package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pullgate/pullgate/proxy/admin"
	"github.com/pullgate/pullgate/storage"
)

const verdictsUsage = `usage:
  pullgate verdicts ls                          blocked images and overrides
  pullgate verdicts show DIGEST|IMAGE@DIGEST    verdicts, override, blobs and audit trail
  pullgate verdicts allow SUBJECT --reason TEXT serve it although it did not scan clean
  pullgate verdicts deny SUBJECT --reason TEXT  refuse it whatever its verdict
  pullgate verdicts rm SUBJECT                  remove an override

SUBJECT is a digest, an image by digest (docker.io/x/y@sha256:…) or a
repository (docker.io/x/y). It talks to a running pullgate's admin API:
--url (env PULLGATE_URL, default http://127.0.0.1:5000) with the token from
--token or PULLGATE_ADMIN_TOKEN.

flags:
`

// verdicts is the CLI over /admin/api/.
func verdicts(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pullgate verdicts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, verdictsUsage); fs.PrintDefaults() }
	var (
		base   = fs.String("url", "", "pullgate's URL, or its admin listener's (env PULLGATE_URL; default http://127.0.0.1:5000)")
		token  = fs.String("token", "", "admin or read-only token; prefer the env PULLGATE_ADMIN_TOKEN (flags show in ps)")
		reason = fs.String("reason", "", "why (allow, deny): recorded in the audit log")
		asJSON = fs.Bool("json", false, "print the API's JSON")
	)
	// Flags may come before or after the positional arguments.
	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) == 0 {
		fs.Usage()
		return errUsage
	}
	switch pos[0] {
	case "ls", "show", "allow", "deny", "rm":
	default:
		fmt.Fprintf(stderr, "pullgate verdicts: unknown command %q\n\n", pos[0])
		fs.Usage()
		return errUsage
	}
	c := apiClient{base: firstNonEmpty(*base, getenv("PULLGATE_URL"), "http://127.0.0.1:5000"),
		token: firstNonEmpty(*token, getenv("PULLGATE_ADMIN_TOKEN"))}
	if c.token == "" {
		return errors.New("no token: set PULLGATE_ADMIN_TOKEN (or --token)")
	}
	c.base = strings.TrimRight(c.base, "/")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cmd, operands := pos[0], pos[1:]
	need := func(n int) error {
		if len(operands) != n {
			fmt.Fprintf(stderr, "pullgate verdicts %s: want %d argument(s), got %d\n\n", cmd, n, len(operands))
			fs.Usage()
			return errUsage
		}
		return nil
	}
	switch cmd {
	case "ls":
		if err := need(0); err != nil {
			return err
		}
		return c.ls(ctx, stdout, *asJSON)
	case "show":
		if err := need(1); err != nil {
			return err
		}
		return c.show(ctx, stdout, operands[0], *asJSON)
	case "allow", "deny":
		if err := need(1); err != nil {
			return err
		}
		if strings.TrimSpace(*reason) == "" {
			return fmt.Errorf("verdicts %s: --reason is required (it goes to the audit log)", cmd)
		}
		return c.set(ctx, stdout, admin.OverrideRequest{Subject: operands[0], Action: cmd, Reason: *reason}, *asJSON)
	case "rm":
		if err := need(1); err != nil {
			return err
		}
		return c.rm(ctx, stdout, operands[0], *asJSON)
	}
	return errUsage
}

// getenv is os.Getenv, replaceable in tests.
var getenv = os.Getenv

// apiClient calls the admin API with a bearer token.
type apiClient struct {
	base, token string
	http        http.Client
}

// do sends a request and decodes a 2xx JSON answer into out; it returns
// the raw body too, for --json.
func (c *apiClient) do(ctx context.Context, method, path string, body any, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s%s: %w", method, c.base, path, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return raw, nil
}

func (c *apiClient) ls(ctx context.Context, w io.Writer, asJSON bool) error {
	var blocked struct {
		Blocked []admin.BlockedImage `json:"blocked"`
	}
	var overrides struct {
		Overrides []storage.Override `json:"overrides"`
	}
	rawB, err := c.do(ctx, http.MethodGet, "/admin/api/blocked", nil, &blocked)
	if err != nil {
		return err
	}
	rawO, err := c.do(ctx, http.MethodGet, "/admin/api/overrides", nil, &overrides)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(w).Encode(map[string]any{"blocked": json.RawMessage(rawB), "overrides": json.RawMessage(rawO)})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BLOCKED\tDIGEST\tFINDING\tATTEMPTS\tLAST SEEN\tOVERRIDE")
	for _, b := range blocked.Blocked {
		finding := b.Reason
		if len(b.Findings) > 0 {
			f := b.Findings[0]
			finding = f.Rule + " " + f.Path
			if len(b.Findings) > 1 {
				finding += fmt.Sprintf(" (+%d)", len(b.Findings)-1)
			}
		}
		over := "-"
		if b.Override != nil {
			over = string(b.Override.Action) + " by " + b.Override.Actor
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", b.Image, b.Digest, finding, b.Attempts, b.LastSeen.Format(time.RFC3339), over)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "OVERRIDE\tSUBJECT\tREASON\tBY\tWHEN\t")
	for _, o := range overrides.Overrides {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", o.Action, o.Subject, o.Reason, o.Actor, o.Time.Format(time.RFC3339))
	}
	return tw.Flush()
}

func (c *apiClient) show(ctx context.Context, w io.Writer, subject string, asJSON bool) error {
	d := subject
	if _, after, ok := strings.Cut(subject, "@"); ok {
		d = after
	}
	var rep admin.VerdictReport
	raw, err := c.do(ctx, http.MethodGet, "/admin/api/verdicts/"+url.PathEscape(d), nil, &rep)
	if err != nil {
		return err
	}
	if asJSON {
		_, err := w.Write(raw)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "digest\t%s\n", rep.Digest)
	fmt.Fprintf(tw, "current ruleset\t%s\n", rep.RulesetID)
	if rep.Override != nil {
		fmt.Fprintf(tw, "override\t%s by %s at %s: %s\n", rep.Override.Action, rep.Override.Actor, rep.Override.Time.Format(time.RFC3339), rep.Override.Reason)
	} else {
		fmt.Fprintf(tw, "override\tnone\n")
	}
	if len(rep.Verdicts) == 0 {
		fmt.Fprintf(tw, "verdicts\tnone (not a blob pullgate scanned)\n")
	}
	for _, v := range rep.Verdicts {
		current := ""
		if v.RulesetID == rep.RulesetID {
			current = " (current rules)"
		}
		fmt.Fprintf(tw, "verdict\t%s%s, ruleset %s, %s\n", v.Status, current, v.RulesetID, v.Time.Format(time.RFC3339))
		for _, f := range v.Findings {
			fmt.Fprintf(tw, "  finding\t%s (%s, %s): %s\n", f.Rule, f.Severity, f.Description, f.Path)
		}
		if v.Reason != "" {
			fmt.Fprintf(tw, "  reason\t%s\n", v.Reason)
		}
	}
	for _, b := range rep.Blobs {
		extra := ""
		if b.Override != nil {
			extra = ", override " + string(b.Override.Action)
		}
		fmt.Fprintf(tw, "%s\t%s %s%s\n", b.Kind, b.Digest, b.Status, extra)
		for _, f := range b.Findings {
			fmt.Fprintf(tw, "  finding\t%s: %s\n", f.Rule, f.Path)
		}
	}
	for _, a := range rep.Audit {
		who := a.Client
		if a.Kind == storage.AuditOverride {
			who = a.Actor
		}
		what := a.Decision.String()
		if a.Action != "" {
			what = a.Action
		}
		fmt.Fprintf(tw, "audit\t%s %s %s %s\n", a.Time.Format(time.RFC3339), a.Kind, what, who)
	}
	return tw.Flush()
}

func (c *apiClient) set(ctx context.Context, w io.Writer, req admin.OverrideRequest, asJSON bool) error {
	var out struct {
		Overrides []storage.Override `json:"overrides"`
	}
	raw, err := c.do(ctx, http.MethodPost, "/admin/api/overrides", req, &out)
	if err != nil {
		return err
	}
	if asJSON {
		_, err := w.Write(raw)
		return err
	}
	for _, o := range out.Overrides {
		fmt.Fprintf(w, "%s %s (by %s)\n", o.Action, o.Subject, o.Actor)
	}
	return nil
}

func (c *apiClient) rm(ctx context.Context, w io.Writer, subject string, asJSON bool) error {
	var out struct {
		Removed []string `json:"removed"`
	}
	raw, err := c.do(ctx, http.MethodDelete, "/admin/api/overrides?subject="+url.QueryEscape(subject), nil, &out)
	if err != nil {
		return err
	}
	if asJSON {
		_, err := w.Write(raw)
		return err
	}
	for _, s := range out.Removed {
		fmt.Fprintf(w, "removed override on %s\n", s)
	}
	return nil
}
