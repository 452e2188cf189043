package upstream

import (
	"context"
	"testing"

	"oras.land/oras-go/v2/registry/remote/auth"
)

// The credential callback is oras-go's only way to the secrets: it must
// hand them to the configured registry's host:port and to no other host,
// whatever a redirect or a realm names.
func TestCredentialsOnlyForTheRegistryHost(t *testing.T) {
	r, err := New(Config{Name: "registry.example.test", URL: "https://registry.example.test:5443",
		Username: "someone", Password: "s3cret-pass"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, tc := range []struct {
		hostport string
		want     auth.Credential
	}{
		{"registry.example.test:5443", auth.Credential{Username: "someone", Password: "s3cret-pass"}},
		{"registry.example.test", auth.EmptyCredential},
		{"cdn.example.test:443", auth.EmptyCredential},
		{"127.0.0.1:5443", auth.EmptyCredential},
	} {
		got, err := r.client.Credential(context.Background(), tc.hostport)
		if err != nil {
			t.Fatalf("Credential(%s): %v", tc.hostport, err)
		}
		if got != tc.want {
			t.Errorf("Credential(%s) = user %q, password set %t; want user %q, password set %t",
				tc.hostport, got.Username, got.Password != "", tc.want.Username, tc.want.Password != "")
		}
	}
}

// Without credentials no callback is set, so oras-go asks nobody.
func TestNoCredentialsNoCallback(t *testing.T) {
	r, err := New(Config{Name: "registry.example.test"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if r.client.Credential != nil {
		t.Fatal("a credential callback is set although the config has no credentials")
	}
}
