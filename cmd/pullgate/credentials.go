package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

// upstreamCredentials gathers one upstream's credentials: username with
// password, password_file or token, else the registry's entry in
// credentials_file (a Docker config.json, read without running helpers).
func upstreamCredentials(name string, u Upstream) (auth.Credential, error) {
	c := auth.Credential{Username: u.Username, Password: u.Password, RefreshToken: u.Token}
	if u.PasswordFile != "" {
		b, err := os.ReadFile(u.PasswordFile)
		if err != nil {
			return c, fmt.Errorf("password_file: %w", err)
		}
		c.Password = strings.TrimSpace(string(b))
	}
	if u.CredentialsFile == "" || c != auth.EmptyCredential {
		return c, nil
	}
	if _, err := os.Stat(u.CredentialsFile); err != nil {
		return c, fmt.Errorf("credentials_file: %w", err)
	}
	store, err := credentials.NewFileStore(u.CredentialsFile)
	if err != nil {
		return c, fmt.Errorf("credentials_file: %w", err)
	}
	c, err = store.Get(context.Background(), credentials.ServerAddressFromRegistry(name))
	if err != nil {
		return c, fmt.Errorf("credentials_file: %w", err)
	}
	if c == auth.EmptyCredential {
		return c, fmt.Errorf("credentials_file %s has no entry for %s", u.CredentialsFile, credentials.ServerAddressFromRegistry(name))
	}
	if c.AccessToken != "" {
		// A registry token expires within minutes: useless for a server.
		return auth.EmptyCredential, fmt.Errorf("credentials_file: the entry for %s holds a registry token, not a login", name)
	}
	return c, nil
}
