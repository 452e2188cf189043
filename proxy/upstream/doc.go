// Package upstream is pullgate's client for upstream registries (Docker Hub
// first): it resolves tags with HEAD, fetches manifests by digest and
// verifies them, opens blob downloads across CDN redirects, and proxies tag
// lists, with token auth delegated to oras-go's auth client.
//
// It never connects to a non-public address that neither the operator's
// configured URL nor AllowNetworks names, whatever a redirect, a token realm
// or DNS says (addresses.go), and its errors keep upstream's words out of
// what clients read (Error.Public).
//
// It never verifies or scans blobs (the caller streams them through the
// gate), never caches content, and never lets credentials or tokens reach an
// error string, a log line or a host other than the registry and its auth
// realm.
package upstream
