package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testsync"
)

const (
	dockerdBinary = "/usr/sbin/dockerd"
	// dockerCLI is Debian's client, matching dockerd 20.10; the newer client
	// in /usr/local/bin would negotiate down but prints differently.
	dockerCLI = "/usr/bin/docker"

	dockerdStartTimeout = 60 * time.Second
	dockerdStopGrace    = 20 * time.Second
)

// DockerdOptions configure a dockerd.
type DockerdOptions struct {
	// Mirrors become "registry-mirrors", e.g. {pg.URL()}.
	Mirrors []string
	// Insecure become "insecure-registries", e.g. {pg.Addr()}. (127.0.0.0/8
	// is insecure by default; listing it is harmless and explicit.)
	Insecure []string
	// Debug runs dockerd with --debug (more detail in Log).
	Debug bool
	// Hosts, if set, is what dockerd sees as /etc/hosts: it then runs in
	// its own mount namespace with this bind-mounted there (gateway mode:
	// "127.0.0.1 registry-1.docker.io"). Only for StartDockerd.
	Hosts string
	// TrustPEM, if set, is CA certificates (PEM) dockerd trusts besides the
	// system's, through SSL_CERT_FILE. Only for StartDockerd.
	TrustPEM []byte
}

// Dockerd is a running dockerd (vfs storage, no bridge, no iptables, its own
// containerd) in a short temporary directory.
type Dockerd struct {
	dir        string
	socket     string
	configPath string
	logPath    string
	dockerCfg  string // DOCKER_CONFIG for the CLI: no user credentials
	debug      bool
	proc       *process
	api        *http.Client

	logFrom int64 // Log() starts here (the current test's part, when shared)
}

// StartDockerd starts a dockerd owned by the test and stopped when it ends.
// Prefer SharedDockerd unless the test needs its own daemon.
func StartDockerd(t testing.TB, opts DockerdOptions) *Dockerd {
	t.Helper()
	d, err := startDockerd(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dockerd log (last 60 lines):\n%s", tail(d.Log(), 60))
		}
		if err := d.stop(); err != nil {
			t.Errorf("stop dockerd: %v", err)
		}
	})
	return d
}

var shared struct {
	mu    sync.Mutex // held by the test using the shared dockerd
	d     *Dockerd
	err   error
	start sync.Once
}

// SharedDockerd returns the package's one long-lived dockerd, started on
// first use and stopped when the suite ends, reconfigured with opts (by
// rewriting daemon.json and SIGHUP, which dockerd applies to mirrors and
// insecure registries without a restart). The test holds it exclusively
// until it ends (other tests asking for it wait), and every image is
// removed then, so each test starts with an empty image store. Log returns
// only what dockerd logged during this test.
func SharedDockerd(t testing.TB, opts DockerdOptions) *Dockerd {
	t.Helper()
	shared.mu.Lock()
	shared.start.Do(func() {
		shared.d, shared.err = startDockerd(DockerdOptions{})
	})
	if shared.err != nil {
		shared.mu.Unlock()
		t.Fatalf("shared dockerd: %v", shared.err)
	}
	d := shared.d
	if d.proc.exited() {
		shared.mu.Unlock()
		t.Fatalf("shared dockerd has exited; log:\n%s", tail(readLog(d.logPath, 0), 60))
	}
	t.Cleanup(func() {
		defer shared.mu.Unlock()
		if t.Failed() {
			t.Logf("dockerd log during this test (last 60 lines):\n%s", tail(d.Log(), 60))
		}
		if err := d.RemoveAllImages(); err != nil {
			t.Errorf("shared dockerd: remove images: %v", err)
		}
	})
	d.logFrom = logSize(d.logPath)
	if err := d.Reconfigure(opts); err != nil {
		t.Fatalf("shared dockerd: %v", err)
	}
	return d
}

func stopSharedDockerd() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.d != nil {
		if err := shared.d.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stop shared dockerd:", err)
		}
	}
}

func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

type daemonJSON struct {
	Mirrors  []string `json:"registry-mirrors"`
	Insecure []string `json:"insecure-registries"`
	Debug    bool     `json:"debug"`
}

func writeDaemonJSON(path string, opts DockerdOptions) error {
	cfg := daemonJSON{Mirrors: opts.Mirrors, Insecure: opts.Insecure, Debug: opts.Debug}
	// Always write the keys: dockerd reloads only keys present in the file.
	if cfg.Mirrors == nil {
		cfg.Mirrors = []string{}
	}
	if cfg.Insecure == nil {
		cfg.Insecure = []string{}
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func startDockerd(opts DockerdOptions) (*Dockerd, error) {
	if _, err := os.Stat(dockerdBinary); err != nil {
		return nil, fmt.Errorf("dockerd is required (apt-get install docker.io): %w", err)
	}
	// Unix socket paths must fit in 108 bytes, containerd's included
	// (<exec-root>/containerd/containerd-debug.sock): keep the root short.
	dir, err := os.MkdirTemp("/tmp", "pgd")
	if err != nil {
		return nil, err
	}
	d := &Dockerd{
		dir:        dir,
		socket:     filepath.Join(dir, "d.sock"),
		configPath: filepath.Join(dir, "daemon.json"),
		logPath:    filepath.Join(dir, "dockerd.log"),
		dockerCfg:  filepath.Join(dir, "cli"),
		debug:      opts.Debug,
	}
	d.api = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dialer net.Dialer
			return dialer.DialContext(ctx, "unix", d.socket)
		},
	}}
	if err := os.Mkdir(d.dockerCfg, 0o700); err != nil {
		return nil, err
	}
	if err := writeDaemonJSON(d.configPath, opts); err != nil {
		return nil, err
	}
	args := []string{
		"--config-file", d.configPath,
		"--storage-driver", "vfs",
		"--bridge", "none",
		"--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
		"--userland-proxy=false",
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "x"),
		"--pidfile", filepath.Join(dir, "d.pid"),
		"-H", "unix://" + d.socket,
	}
	appendLog(d.logPath, "--- dockerd "+strings.Join(args, " ")+"\n")
	bin, env, err := d.isolation(opts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if bin != dockerdBinary {
		args = append([]string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c",
			`mount --bind "$0" /etc/hosts && exec "$@"`, filepath.Join(dir, "hosts"), dockerdBinary}, args...)
	}
	d.proc, err = startProcessEnv("dockerd", d.logPath, env, bin, args...)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	answered := testsync.Until(dockerdStartTimeout, func() bool {
		return d.proc.exited() || d.ping() == nil
	})
	switch {
	case d.proc.exited():
		err = fmt.Errorf("dockerd exited during start-up; log:\n%s", tail(d.Log(), 40))
	case !answered:
		err = fmt.Errorf("dockerd did not answer /_ping within %s; log:\n%s", dockerdStartTimeout, tail(d.Log(), 40))
	}
	if err != nil {
		_ = d.stop()
		return nil, err
	}
	return d, nil
}

// isolation prepares what opts.Hosts and opts.TrustPEM need: the binary
// to run (unshare for its own mount namespace) and extra environment.
func (d *Dockerd) isolation(opts DockerdOptions) (string, []string, error) {
	bin := dockerdBinary
	var env []string
	if opts.Hosts != "" {
		if err := os.WriteFile(filepath.Join(d.dir, "hosts"), []byte(opts.Hosts), 0o644); err != nil {
			return "", nil, err
		}
		bin = "unshare"
	}
	if len(opts.TrustPEM) > 0 {
		system, _ := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
		bundle := filepath.Join(d.dir, "ca-bundle.pem")
		if err := os.WriteFile(bundle, append(append(system, '\n'), opts.TrustPEM...), 0o644); err != nil {
			return "", nil, err
		}
		env = append(env, "SSL_CERT_FILE="+bundle)
	}
	return bin, env, nil
}

func (d *Dockerd) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := d.call(ctx, http.MethodGet, "/_ping", http.StatusOK)
	return err
}

// call makes an Engine API request and returns the body, or an error
// carrying dockerd's message when the status is not want.
func (d *Dockerd) call(ctx context.Context, method, path string, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://docker"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.api.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		var e struct{ Message string }
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return nil, &APIError{Status: resp.StatusCode, Message: e.Message}
		}
		return nil, &APIError{Status: resp.StatusCode, Message: strings.TrimSpace(string(body))}
	}
	return body, nil
}

// APIError is an Engine API error response.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("dockerd: %d: %s", e.Status, e.Message) }

// Host is the -H value for the docker CLI, "unix:///tmp/pgd.../d.sock".
func (d *Dockerd) Host() string { return "unix://" + d.socket }

// Log is what dockerd logged (for the shared dockerd: during this test).
func (d *Dockerd) Log() string { return readLog(d.logPath, d.logFrom) }

// Reconfigure rewrites daemon.json with opts and reloads dockerd (SIGHUP),
// returning once the reload is done.
func (d *Dockerd) Reconfigure(opts DockerdOptions) error {
	opts.Debug = opts.Debug || d.debug
	if err := writeDaemonJSON(d.configPath, opts); err != nil {
		return err
	}
	before := strings.Count(readLog(d.logPath, 0), "Reloaded configuration")
	if err := d.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("reload dockerd: %w", err)
	}
	if !testsync.Until(20*time.Second, func() bool {
		return strings.Count(readLog(d.logPath, 0), "Reloaded configuration") > before
	}) {
		return fmt.Errorf("dockerd did not reload its configuration within 20s; log:\n%s", tail(d.Log(), 30))
	}
	mirrors, err := d.Mirrors()
	if err != nil {
		return err
	}
	want := make([]string, 0, len(opts.Mirrors))
	for _, m := range opts.Mirrors {
		want = append(want, strings.TrimSuffix(m, "/"))
	}
	if !slices.Equal(mirrors, want) {
		return fmt.Errorf("dockerd reloaded with mirrors %q, want %q", mirrors, want)
	}
	return nil
}

// Mirrors returns the registry mirrors dockerd is using (GET /info), without
// trailing slashes.
func (d *Dockerd) Mirrors() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, err := d.call(ctx, http.MethodGet, "/info", http.StatusOK)
	if err != nil {
		return nil, err
	}
	var info struct {
		RegistryConfig struct{ Mirrors []string }
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(info.RegistryConfig.Mirrors))
	for _, m := range info.RegistryConfig.Mirrors {
		out = append(out, strings.TrimSuffix(m, "/"))
	}
	return out, nil
}

// Docker runs the docker CLI against this dockerd (with an empty client
// config: no credentials) and returns its combined output. The error is
// non-nil when the CLI exits non-zero; the output then holds what a user
// would see ("Error response from daemon: ...").
func (d *Dockerd) Docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, dockerCLI, append([]string{"-H", d.Host()}, args...)...)
	cmd.Env = append(withoutProxyEnv(os.Environ()), "DOCKER_CONFIG="+d.dockerCfg, "DOCKER_CLI_HINTS=false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Pull runs `docker pull ref`; see Docker for the output and error.
func (d *Dockerd) Pull(ctx context.Context, ref string) (string, error) {
	return d.Docker(ctx, "pull", ref)
}

// RepoDigests returns the image's RepoDigests ("alpine@sha256:...",
// "127.0.0.1:5000/library/x@sha256:...").
func (d *Dockerd) RepoDigests(ref string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body, err := d.call(ctx, http.MethodGet, "/images/"+ref+"/json", http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	var img struct{ RepoDigests []string }
	if err := json.Unmarshal(body, &img); err != nil {
		return nil, err
	}
	sort.Strings(img.RepoDigests)
	return img.RepoDigests, nil
}

// HasImage reports whether dockerd has an image under ref.
func (d *Dockerd) HasImage(ref string) bool {
	_, err := d.RepoDigests(ref)
	return err == nil
}

// RemoveImage removes the image (forced); an image that is not there is
// not an error.
func (d *Dockerd) RemoveImage(ref string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := d.call(ctx, http.MethodDelete, "/images/"+ref+"?force=1", http.StatusOK)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

// RemoveAllImages removes every image.
func (d *Dockerd) RemoveAllImages() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	body, err := d.call(ctx, http.MethodGet, "/images/json?all=1", http.StatusOK)
	if err != nil {
		return err
	}
	var imgs []struct{ ID string }
	if err := json.Unmarshal(body, &imgs); err != nil {
		return err
	}
	for _, img := range imgs {
		if err := d.RemoveImage(img.ID); err != nil {
			return err
		}
	}
	return nil
}

// stop stops dockerd by PID and removes its directory, unmounting whatever
// it left mounted there.
func (d *Dockerd) stop() error {
	err := d.proc.stop(dockerdStopGrace)
	if uerr := unmountUnder(d.dir); uerr != nil && err == nil {
		err = uerr
	}
	if rerr := os.RemoveAll(d.dir); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// unmountUnder lazily unmounts every mount point below dir, deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		// Mount points escape space, tab, newline and backslash as octal.
		p, err := url.PathUnescape(strings.NewReplacer(`\040`, "%20", `\011`, "%09", `\012`, "%0A", `\134`, "%5C").Replace(fields[4]))
		if err != nil {
			continue
		}
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
