// Package testregistry runs a stand-in for Docker Hub inside a test: a real
// distribution v3 registry (in-memory storage) behind the parts of Docker
// Hub's behaviour that a pull-through mirror has to cope with.
//
//   - Token auth: a Bearer challenge whose realm is a small token issuer in
//     this package (/token on the registry's port), anonymous pulls allowed,
//     optional required credentials (WithCredentials).
//   - Blob downloads answer 307 to a second listener, the "CDN", on another
//     loopback address, which serves the bytes without auth.
//   - A log of every request (Requests; only the scheme of an
//     Authorization header is kept), counters (blob GETs at the registry
//     and at the CDN, manifest GETs and HEADs, token requests), per-digest
//     fault injection (Fault), a global down switch and Docker Hub's
//     ratelimit headers on manifest responses.
//   - Token behaviours: required credentials (WithCredentials), a pull
//     limit (WithPullLimit), and a token endpoint that echoes refused
//     credentials in its error body (WithEchoingTokenErrors), as a hostile
//     realm might.
//   - Helpers that build synthetic images (Layer, Image) that a real dockerd
//     accepts, and push them (Push, PushIndex).
//
// It is for tests only: it never touches the network beyond 127.0.0.0/8 and
// it must never hold real malware; tests build harmless samples. It must
// not import proxy or its subpackages (proxy/upstream tests use it), so that
// it stands in for Docker Hub without knowing the client it tests.
package testregistry
