package proxy

import "github.com/pullgate/pullgate/proxy/gate"

// RepoPolicy is the publisher policy of one registry (see gate.RepoPolicy).
type RepoPolicy = gate.RepoPolicy

// DigestSet answers whether a digest is on a list (see gate.DigestSet).
type DigestSet = gate.DigestSet

// ValidatePolicy checks every pattern compiles, for config loading.
func ValidatePolicy(p map[string]RepoPolicy) error { return gate.ValidatePolicy(p) }
