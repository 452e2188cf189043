package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// loadFile reads a YAML config over c; unknown keys are errors, so a typo
// never silently leaves a default in place.
func (c *Config) loadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// listFlag is a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// serveFlags are the flags of pullgate serve; each has a PULLGATE_*
// environment variable of the same name.
type serveFlags struct {
	config, listen, dataDir, redis string
	listenCert, listenKey          string
	upstreams, upstreamAllow       listFlag
	rules                          listFlag
	workers                        int
	gateway                        gatewayFlags
	admin                          adminFlags
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "YAML config file (env PULLGATE_CONFIG)")
	fs.StringVar(&f.listen, "listen", "", `address to listen on (default ":5000"; env PULLGATE_LISTEN)`)
	fs.StringVar(&f.listenCert, "listen-cert", "", "PEM certificate (chain) to serve --listen over TLS, reloaded when it changes (env PULLGATE_LISTEN_CERT)")
	fs.StringVar(&f.listenKey, "listen-key", "", "PEM private key for --listen-cert (env PULLGATE_LISTEN_KEY)")
	fs.StringVar(&f.dataDir, "data-dir", "", `directory for blobs and the embedded verdict store (default "./data"; env PULLGATE_DATA_DIR)`)
	fs.StringVar(&f.redis, "redis", "", "Redis URL for shared verdicts; empty: embedded store (env PULLGATE_REDIS)")
	fs.Var(&f.upstreams, "upstream", "REGISTRY=URL, repeatable, e.g. docker.io=http://127.0.0.1:5001 (env PULLGATE_UPSTREAM, comma-separated)")
	fs.Var(&f.upstreamAllow, "upstream-allow", "REGISTRY=CIDR, repeatable: a non-public network that registry's redirects and token realm may lead to, e.g. docker.io=10.0.0.0/8 (env PULLGATE_UPSTREAM_ALLOW, comma-separated)")
	fs.Var(&f.rules, "rules", "extra YARA rule file or folder, repeatable (env PULLGATE_RULES, colon-separated)")
	fs.IntVar(&f.workers, "workers", 0, "scanner workers (default: CPU count; env PULLGATE_WORKERS)")
	f.gateway.register(fs)
	f.admin.register(fs)
}

// resolve builds the Config: defaults, then file, then env, then flags.
func (f *serveFlags) resolve(getenv func(string) string) (Config, error) {
	c := defaultConfig()
	path := firstNonEmpty(f.config, getenv("PULLGATE_CONFIG"))
	if path != "" {
		if err := c.loadFile(path); err != nil {
			return c, err
		}
	}
	if v := getenv("PULLGATE_LISTEN"); v != "" {
		c.Listen = v
	}
	if v := getenv("PULLGATE_DATA_DIR"); v != "" {
		c.DataDir = v
	}
	if v := getenv("PULLGATE_REDIS"); v != "" {
		c.Redis = v
	}
	if v := getenv("PULLGATE_WORKERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return c, fmt.Errorf("PULLGATE_WORKERS: %w", err)
		}
		c.Workers = n
	}
	if v := getenv("PULLGATE_RULES"); v != "" {
		c.Rules = append(c.Rules, filepath.SplitList(v)...)
	}
	if err := c.setUpstreams(splitNonEmpty(getenv("PULLGATE_UPSTREAM"), ",")); err != nil {
		return c, fmt.Errorf("PULLGATE_UPSTREAM: %w", err)
	}

	if f.listen != "" {
		c.Listen = f.listen
	}
	if f.dataDir != "" {
		c.DataDir = f.dataDir
	}
	if f.redis != "" {
		c.Redis = f.redis
	}
	if f.workers != 0 {
		c.Workers = f.workers
	}
	c.Rules = append(c.Rules, f.rules...)
	if err := c.setUpstreams(f.upstreams); err != nil {
		return c, fmt.Errorf("--upstream: %w", err)
	}
	// Allowed networks add up, so they are applied once every upstream is
	// known.
	if err := c.allowUpstreamNetworks(splitNonEmpty(getenv("PULLGATE_UPSTREAM_ALLOW"), ",")); err != nil {
		return c, fmt.Errorf("PULLGATE_UPSTREAM_ALLOW: %w", err)
	}
	if err := c.allowUpstreamNetworks(f.upstreamAllow); err != nil {
		return c, fmt.Errorf("--upstream-allow: %w", err)
	}
	applyStrings(getenv, []stringSetting{
		{&c.Storage.S3.SecretKey, "PULLGATE_S3_SECRET_KEY", ""},
		{&c.TLS.Cert, "PULLGATE_LISTEN_CERT", f.listenCert},
		{&c.TLS.Key, "PULLGATE_LISTEN_KEY", f.listenKey},
	})
	f.gateway.apply(&c.Gateway, getenv)
	f.admin.apply(&c.Admin, getenv)
	return c, c.validate()
}

// setUpstreams applies REGISTRY=URL pairs, keeping credentials already
// configured for that registry.
func (c *Config) setUpstreams(pairs []string) error {
	for _, p := range pairs {
		name, url, ok := strings.Cut(p, "=")
		if !ok || name == "" || url == "" {
			return fmt.Errorf("%q is not REGISTRY=URL", p)
		}
		if c.Upstreams == nil {
			c.Upstreams = map[string]Upstream{}
		}
		u := c.Upstreams[name]
		u.URL = url
		c.Upstreams[name] = u
	}
	return nil
}

// allowUpstreamNetworks applies REGISTRY=CIDR pairs, adding to the
// registry's allow_networks. The registry must be configured (earlier or in
// the file): a network allowed for a registry nobody configured is a typo.
func (c *Config) allowUpstreamNetworks(pairs []string) error {
	for _, p := range pairs {
		name, cidr, ok := strings.Cut(p, "=")
		if !ok || name == "" || cidr == "" {
			return fmt.Errorf("%q is not REGISTRY=CIDR", p)
		}
		u, ok := c.Upstreams[name]
		if !ok {
			return fmt.Errorf("%q: no upstream %s is configured", p, name)
		}
		u.AllowNetworks = append(slices.Clone(u.AllowNetworks), cidr)
		c.Upstreams[name] = u
	}
	return nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func splitNonEmpty(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// stringSetting is one string option: where it goes, its PULLGATE_*
// variable, and the flag's value.
type stringSetting struct {
	dst        *string
	env, value string
}

// applyStrings sets each option from the environment, then from its flag:
// the flag wins, as everywhere in the config.
func applyStrings(getenv func(string) string, settings []stringSetting) {
	for _, kv := range settings {
		if v := getenv(kv.env); v != "" {
			*kv.dst = v
		}
		if kv.value != "" {
			*kv.dst = kv.value
		}
	}
}
