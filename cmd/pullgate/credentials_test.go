package main

import (
	"encoding/base64"
	"path/filepath"
	"testing"

	"oras.land/oras-go/v2/registry/remote/auth"
)

func TestUpstreamCredentials(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.json")
	basic := base64.StdEncoding.EncodeToString([]byte("hubuser:hubpass"))
	writeFile(t, cfgPath, `{"auths":{
		"https://index.docker.io/v1/":{"auth":"`+basic+`"},
		"ghcr.io":{"username":"x","identitytoken":"id-token"}}}`)
	pw := filepath.Join(dir, "pw")
	writeFile(t, pw, "from-file\n")

	for name, c := range map[string]struct {
		registry string
		u        Upstream
		want     auth.Credential
		fails    bool
	}{
		"password file":        {"docker.io", Upstream{Username: "u", PasswordFile: pw}, auth.Credential{Username: "u", Password: "from-file"}, false},
		"token":                {"quay.io", Upstream{Username: "u", Token: "t"}, auth.Credential{Username: "u", RefreshToken: "t"}, false},
		"docker hub from file": {"docker.io", Upstream{CredentialsFile: cfgPath}, auth.Credential{Username: "hubuser", Password: "hubpass"}, false},
		"identity token file":  {"ghcr.io", Upstream{CredentialsFile: cfgPath}, auth.Credential{Username: "x", RefreshToken: "id-token"}, false},
		"explicit wins":        {"docker.io", Upstream{Username: "a", Password: "b", CredentialsFile: cfgPath}, auth.Credential{Username: "a", Password: "b"}, false},
		"no entry":             {"quay.io", Upstream{CredentialsFile: cfgPath}, auth.Credential{}, true},
		"missing file":         {"quay.io", Upstream{CredentialsFile: filepath.Join(dir, "nope.json")}, auth.Credential{}, true},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := upstreamCredentials(c.registry, c.u)
			if (err != nil) != c.fails {
				t.Fatalf("err = %v, want failure %v", err, c.fails)
			}
			if !c.fails && got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}
