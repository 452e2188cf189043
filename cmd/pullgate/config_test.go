package main

import (
	"flag"
	"io"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// The example config documents every option with its default: loading it
// must give exactly the built-in defaults, so the two can never drift.
func TestExampleConfigIsTheDefaults(t *testing.T) {
	c := defaultConfig()
	if err := c.loadFile(filepath.Join("..", "..", "configs", "pullgate.yaml")); err != nil {
		t.Fatal(err)
	}
	if want := defaultConfig(); !reflect.DeepEqual(c, want) {
		t.Fatalf("configs/pullgate.yaml differs from the defaults:\n got %+v\nwant %+v", c, want)
	}
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	writeFile(t, file, "listen: \":6000\"\nworkers: 3\ngate:\n  hold: 5s\nupstreams:\n  ghcr.io:\n    url: https://ghcr.io\n    username: bot\n")

	env := map[string]string{
		"PULLGATE_CONFIG":   file,
		"PULLGATE_LISTEN":   ":7000",
		"PULLGATE_UPSTREAM": "ghcr.io=http://127.0.0.1:9999",
		"PULLGATE_RULES":    "/a.yar:/b",
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f serveFlags
	f.register(fs)
	if err := fs.Parse([]string{"--listen", "127.0.0.1:8000", "--rules", "/c.yar", "--upstream", "docker.io=http://127.0.0.1:5001"}); err != nil {
		t.Fatal(err)
	}
	c, err := f.resolve(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8000" {
		t.Errorf("flag should win: listen = %q", c.Listen)
	}
	if c.Workers != 3 || time.Duration(c.Gate.Hold) != 5*time.Second {
		t.Errorf("file values lost: workers=%d hold=%v", c.Workers, time.Duration(c.Gate.Hold))
	}
	if got := c.Upstreams["ghcr.io"]; got.URL != "http://127.0.0.1:9999" || got.Username != "bot" {
		t.Errorf("env upstream should replace the URL and keep the file's credentials: %+v", got)
	}
	if got := c.Upstreams["docker.io"].URL; got != "http://127.0.0.1:5001" {
		t.Errorf("flag upstream: %q", got)
	}
	if want := []string{"/a.yar", "/b", "/c.yar"}; !reflect.DeepEqual(c.Rules, want) {
		t.Errorf("rules = %v, want %v", c.Rules, want)
	}
}

func TestConfigRejectsUnknownKeysAndBadValues(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"typo":     "listn: \":5000\"\n",
		"duration": "gate:\n  hold: soon\n",
		"no url":   "upstreams:\n  quay.io: {}\n",
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, name+".yaml")
			writeFile(t, file, body)
			var f serveFlags
			f.config = file
			if _, err := f.resolve(func(string) string { return "" }); err == nil {
				t.Fatal("accepted a bad config")
			}
		})
	}
	var f serveFlags
	f.upstreams = listFlag{"docker.io"}
	if _, err := f.resolve(func(string) string { return "" }); err == nil {
		t.Fatal("accepted --upstream without =URL")
	}
}
