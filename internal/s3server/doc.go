// Package s3server runs a real S3-protocol server (s3rver, from the npm
// registry, installed by make deps under internal/s3server/npm) on a free
// loopback port for tests of pullgate's S3 blob store. One server is shared
// by a test binary and goes when the binary does.
//
// It is for tests only: it listens on 127.0.0.1 only, never talks to a real
// S3 service, and never holds anything but test data.
package s3server
