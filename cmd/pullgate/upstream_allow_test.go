package main

import (
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// allow_networks comes from the file, PULLGATE_UPSTREAM_ALLOW and
// --upstream-allow, adding up, and reaches the upstream client parsed.
func TestUpstreamAllowNetworks(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p.yaml")
	writeFile(t, file, "upstreams:\n  ghcr.io:\n    url: http://10.0.0.5:5000\n    insecure: true\n    allow_networks: [10.0.0.0/8]\n")
	env := map[string]string{"PULLGATE_UPSTREAM_ALLOW": "ghcr.io=127.0.0.1/32, docker.io=::1/128"}
	f := serveFlags{config: file, upstreams: listFlag{"quay.io=http://127.0.0.1:5002"}, upstreamAllow: listFlag{"quay.io=127.0.0.2/32"}}
	c, err := f.resolve(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"ghcr.io": {"10.0.0.0/8", "127.0.0.1/32"}, "docker.io": {"::1/128"}, "quay.io": {"127.0.0.2/32"}}
	for name, w := range want {
		if got := c.Upstreams[name].AllowNetworks; !reflect.DeepEqual(got, w) {
			t.Errorf("%s allow_networks = %q, want %q", name, got, w)
		}
	}
	ups, err := newUpstreams(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 3 {
		t.Fatalf("%d upstreams", len(ups))
	}
	if p, _ := c.Upstreams["ghcr.io"].allowNetworks(); !reflect.DeepEqual(p, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}) {
		t.Errorf("parsed %v", p)
	}
}

func TestUpstreamAllowNetworksRefusesMistakes(t *testing.T) {
	cases := map[string]struct {
		yaml  string
		flags listFlag
		want  string
	}{
		"not a CIDR":        {yaml: "upstreams:\n  docker.io:\n    url: https://registry-1.docker.io\n    allow_networks: [10.0.0.1]\n", want: "allow_networks"},
		"flag without CIDR": {flags: listFlag{"docker.io"}, want: "REGISTRY=CIDR"},
		"flag bad CIDR":     {flags: listFlag{"docker.io=localhost"}, want: "allow_networks"},
		"unknown registry":  {flags: listFlag{"quay.io=10.0.0.0/8"}, want: "no upstream quay.io"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var f serveFlags
			if c.yaml != "" {
				f.config = filepath.Join(t.TempDir(), "p.yaml")
				writeFile(t, f.config, c.yaml)
			}
			f.upstreamAllow = c.flags
			_, err := f.resolve(func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}
