// Package e2e holds pullgate's end-to-end tests: a real dockerd (and
// containerd's clients) pulls through a real pullgate binary from an
// in-process stand-in for Docker Hub (internal/testregistry), all inside a
// network namespace that has only loopback (see TestMain). It proves, from
// the outside, that no client receives a layer or an image manifest without
// a clean verdict under the current ruleset. main_test.go and the
// harness_*_test.go, dockerd_test.go, containerd_helpers_test.go,
// stream_helpers_test.go (an upstream that holds a layer's tail back, a tap
// in front of pullgate), stream_clients_test.go (each client behind one
// interface) and standin_test.go (a mirror that refuses as each gate mode
// does, without pullgate) files are the harness; the other *_test.go files
// are the scenarios. TestStandInClientRefusals and TestStreamColdPullTimes
// are measurements, run only with PULLGATE_E2E_MEASURE_CLIENTS=1.
//
// The suite must never reach anything but loopback inside its own network
// namespace (TestMain refuses to run the scenarios anywhere else), and must
// never carry real malware: the images it pulls carry harmless samples built
// by internal/samples that only bear the indicators the rules look for.
package e2e
