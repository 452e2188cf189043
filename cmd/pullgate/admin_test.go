package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func TestAdminConfig(t *testing.T) {
	resolve := func(args []string, env map[string]string) (Config, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var f serveFlags
		f.register(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return f.resolve(func(k string) string { return env[k] })
	}
	c, err := resolve([]string{"--admin-listen", "127.0.0.1:5001"}, map[string]string{
		"PULLGATE_ADMIN_TOKEN": "env-admin-token-0123456789", "PULLGATE_WEBHOOK_URL": "http://hooks.internal/pullgate",
		"PULLGATE_WEBHOOK_SECRET": "s3cret",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Token != "env-admin-token-0123456789" || c.Admin.Listen != "127.0.0.1:5001" || c.Admin.Webhook.Secret != "s3cret" {
		t.Fatalf("admin config: %+v", c.Admin)
	}
	c, err = resolve([]string{"--admin-token", "flag-admin-token-0123456789"}, map[string]string{"PULLGATE_ADMIN_TOKEN": "env-admin-token-0123456789"})
	if err != nil || c.Admin.Token != "flag-admin-token-0123456789" {
		t.Fatalf("the flag should win: %q %v", c.Admin.Token, err)
	}
	for name, env := range map[string]map[string]string{
		"short token":            {"PULLGATE_ADMIN_TOKEN": "short"},
		"same tokens":            {"PULLGATE_ADMIN_TOKEN": "same-token-0123456789", "PULLGATE_ADMIN_READONLY_TOKEN": "same-token-0123456789"},
		"webhook without secret": {"PULLGATE_WEBHOOK_URL": "http://hooks.internal/"},
	} {
		_, err := resolve(nil, env)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		for _, v := range env {
			if len(v) > 8 && strings.Contains(err.Error(), v) {
				t.Errorf("%s: the error repeats a secret: %v", name, err)
			}
		}
	}
}
