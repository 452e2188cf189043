// Package proxy is pullgate's registry HTTP API: the read half of the OCI
// distribution API as a pull-through mirror. It routes, parses names and
// references, negotiates manifest types, answers errors in OCI's terms and
// writes bytes the gate let through, verifying stored blobs as they go
// out. Each handler reads top to bottom: parse, ask the gate
// (proxy/gate), write.
//
// proxy never decides what may be served: every refusal and every "serve"
// is a gate.Decision, which proxy only turns into a status and a body. It
// never sends a blob's last bytes (in hold mode, any byte) without a clean
// verdict under the current ruleset (or an operator's allow): in stream
// mode (stream.go) a layer's body goes out while it is scanned and its
// tail waits for the gate's decision.
package proxy
