package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testsync"
)

// The client side of the suite: a containerd of the test's own with ctr,
// skopeo and podman, configured from the snippets in configs/.

const containerdBinary = "/usr/bin/containerd"

// Containerd is a running containerd (no CRI, native snapshotter) in a
// short temporary directory, stopped by PID when the test ends.
type Containerd struct {
	dir, address string
	proc         *process
}

// StartContainerd starts a containerd for this test.
func StartContainerd(t testing.TB) *Containerd {
	t.Helper()
	for _, bin := range []string{containerdBinary, "ctr"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is required (apt-get install containerd): %v", bin, err)
		}
	}
	// Unix socket paths must fit in 108 bytes: keep the directory short.
	dir, err := os.MkdirTemp("/tmp", "pgc")
	if err != nil {
		t.Fatal(err)
	}
	c := &Containerd{dir: dir, address: filepath.Join(dir, "c.sock")}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.address)
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "containerd.log")
	c.proc, err = startProcess("containerd", logPath, containerdBinary, "--config", cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("containerd log (last 30 lines):\n%s", tail(readLog(logPath, 0), 30))
		}
		if err := c.proc.stop(20 * time.Second); err != nil {
			t.Errorf("stop containerd: %v", err)
		}
		_ = unmountUnder(dir)
		os.RemoveAll(dir)
	})
	started := testsync.Until(30*time.Second, func() bool {
		if c.proc.exited() {
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := c.Ctr(ctx, "version")
		return err == nil
	})
	if !started || c.proc.exited() {
		t.Fatalf("containerd did not answer `ctr version` within 30s (exited: %t)\n%s", c.proc.exited(), tail(readLog(logPath, 0), 30))
	}
	return c
}

// Ctr runs ctr against this containerd and returns its combined output.
func (c *Containerd) Ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.address}, args...)...)
	cmd.Env = withoutProxyEnv(os.Environ())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Pull runs `ctr images pull` with the hosts.toml files of hostsDir.
func (c *Containerd) Pull(ctx context.Context, hostsDir, ref string, extra ...string) (string, error) {
	args := append([]string{"images", "pull", "--snapshotter", "native", "--hosts-dir", hostsDir}, extra...)
	return c.Ctr(ctx, append(args, ref)...)
}

// configSnippet reads a file under configs/ and points it at pullgate:
// "pullgate.internal:5000" becomes addr (host:port).
func configSnippet(t testing.TB, rel, addr string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "configs", rel))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "pullgate.internal:5000") {
		t.Fatalf("configs/%s does not name pullgate.internal:5000", rel)
	}
	return strings.ReplaceAll(string(b), "pullgate.internal:5000", addr)
}

// hostsDir builds a containerd hosts directory from configs/containerd/
// <variant>/<registry>/hosts.toml for each registry, pointed at addr.
func hostsDir(t testing.TB, variant, addr string, registries ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, reg := range registries {
		body := configSnippet(t, filepath.Join("containerd", variant, reg, "hosts.toml"), addr)
		if err := os.MkdirAll(filepath.Join(dir, reg), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, reg, "hosts.toml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// recorder is a reverse proxy in front of pullgate that remembers the
// request URIs clients send, so a test can see what a real client asked.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	uris []string
}

func newRecorder(t testing.TB, target string) *recorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.uris = append(r.uris, req.Method+" "+req.URL.RequestURI())
		r.mu.Unlock()
		proxy.ServeHTTP(w, req)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.srv.Listener = ln
	r.srv.Start()
	t.Cleanup(r.srv.Close)
	return r
}

// Addr is the recorder's host:port.
func (r *recorder) Addr() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// seen returns the recorded "METHOD /uri" lines that contain every part.
func (r *recorder) seen(parts ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, u := range r.uris {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(u, p)
		}
		if ok {
			out = append(out, u)
		}
	}
	return out
}

// skopeo runs skopeo with a registries.conf and returns its output.
func skopeo(ctx context.Context, registriesConf string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "skopeo", append([]string{"--registries-conf", registriesConf}, args...)...)
	cmd.Env = withoutProxyEnv(os.Environ())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("skopeo %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// writeTemp writes body to a new file in a test directory.
func writeTemp(t testing.TB, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
