package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testsync"
)

// workDir holds what outlives a single test (a lazily built binary); set by
// TestMain inside the namespace and removed when the suite ends.
var workDir string

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// withoutProxyEnv drops proxy settings, so nothing the suite starts tries a
// proxy it cannot reach.
func withoutProxyEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy":
			continue
		}
		out = append(out, kv)
	}
	return out
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	// Where Go is installed on these machines, for a PATH without it.
	return "/usr/local/go/bin/go"
}

// buildPullgate runs `go build -o bin ./cmd/pullgate` in the module root.
func buildPullgate(bin string, extraEnv []string) ([]byte, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	matches, _ := filepath.Glob(filepath.Join(root, "cmd", "pullgate", "*.go"))
	if len(matches) == 0 {
		return nil, errors.New("cmd/pullgate does not exist yet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", bin, "./cmd/pullgate")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), extraEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("go build ./cmd/pullgate: %w", err)
	}
	return out, nil
}

var pullgateBinary struct {
	once sync.Once
	path string
	err  error
}

// PullgateBinary returns the path of the pullgate binary built for this run
// (by TestMain before entering the namespace, or from EnvBinary), building
// it here, offline, if neither happened. It fails the test if there is none.
func PullgateBinary(t testing.TB) string {
	t.Helper()
	pullgateBinary.once.Do(func() {
		if p := os.Getenv(EnvBinary); p != "" {
			pullgateBinary.path = p
			if _, err := os.Stat(p); err != nil {
				pullgateBinary.err = fmt.Errorf("%s=%s: %w", EnvBinary, p, err)
			}
			return
		}
		if msg := os.Getenv(envBuildError); msg != "" {
			pullgateBinary.err = errors.New(msg)
			return
		}
		dir := workDir
		if dir == "" {
			dir = os.TempDir()
		}
		p := filepath.Join(dir, "pullgate")
		out, err := buildPullgate(p, []string{"GOPROXY=off", "GOTOOLCHAIN=local"})
		if err != nil {
			pullgateBinary.err = fmt.Errorf("%w\n%s", err, out)
			return
		}
		pullgateBinary.path = p
	})
	if pullgateBinary.err != nil {
		t.Fatalf("no pullgate binary: %v", pullgateBinary.err)
	}
	return pullgateBinary.path
}

// process is a child process whose output goes to a log file, stopped by
// PID.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
}

func startProcess(name, logPath string, bin string, args ...string) (*process, error) {
	return startProcessEnv(name, logPath, nil, bin, args...)
}

// startProcessEnv is startProcess with extra environment variables.
func startProcessEnv(name, logPath string, env []string, bin string, args ...string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(withoutProxyEnv(os.Environ()), env...)
	// If the suite dies without cleaning up, its children follow.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, and SIGKILL if the process has not exited within
// grace.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for %s and was killed", p.name, p.cmd.Process.Pid, grace)
}

func readLog(path string, from int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(from, 0); err != nil {
		return ""
	}
	var b strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// PullgateOptions configure StartPullgate.
type PullgateOptions struct {
	// Upstreams maps a registry name to its upstream URL,
	// e.g. {"docker.io": reg.URL()}; each becomes --upstream NAME=URL, with
	// --upstream-allow NAME=127.0.0.0/8: a testregistry's CDN listens on
	// another loopback address, which pullgate refuses unless allowed.
	Upstreams map[string]string
	// Redis is a Redis URL (see internal/redisserver); empty: embedded store.
	Redis string
	// DataDir defaults to a fresh t.TempDir().
	DataDir string
	// Extra arguments appended to `pullgate serve ...`.
	Extra []string
	// TLSRoots, when set, means pullgate serves TLS (Extra carries
	// --listen-cert and --listen-key) and is reached over https, trusting
	// these roots.
	TLSRoots *x509.CertPool
}

// Pullgate is a running `pullgate serve`.
type Pullgate struct {
	t       testing.TB
	bin     string
	args    []string
	addr    string
	dataDir string
	logPath string

	roots *x509.CertPool

	mu   sync.Mutex
	proc *process
}

// StartPullgate runs the pullgate binary on a free loopback port and waits
// until GET /v2/ answers 200. It is stopped when the test ends.
func StartPullgate(t testing.TB, opts PullgateOptions) *Pullgate {
	t.Helper()
	bin := PullgateBinary(t)
	dataDir := opts.DataDir
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	args := []string{"serve", "--listen", addr, "--data-dir", dataDir}
	names := make([]string, 0, len(opts.Upstreams))
	for name := range opts.Upstreams {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		args = append(args, "--upstream", name+"="+opts.Upstreams[name], "--upstream-allow", name+"=127.0.0.0/8")
	}
	if opts.Redis != "" {
		args = append(args, "--redis", opts.Redis)
	}
	args = append(args, opts.Extra...)

	pg := &Pullgate{t: t, bin: bin, args: args, addr: addr, dataDir: dataDir, logPath: filepath.Join(t.TempDir(), "pullgate.log"), roots: opts.TLSRoots}
	t.Cleanup(func() {
		if err := pg.stop(); err != nil {
			t.Errorf("stop pullgate: %v", err)
		}
		if t.Failed() {
			t.Logf("pullgate log (last 80 lines, full log was %s):\n%s", pg.logPath, tail(pg.Log(), 80))
		}
	})
	pg.start()
	return pg
}

func (pg *Pullgate) start() {
	pg.t.Helper()
	appendLog(pg.logPath, "--- pullgate "+strings.Join(pg.args, " ")+"\n")
	proc, err := startProcess("pullgate", pg.logPath, pg.bin, pg.args...)
	if err != nil {
		pg.t.Fatal(err)
	}
	pg.mu.Lock()
	pg.proc = proc
	pg.mu.Unlock()
	client := pg.Client()
	client.Timeout = 2 * time.Second
	answered := testsync.Until(30*time.Second, func() bool {
		if proc.exited() {
			return true
		}
		resp, err := client.Get(pg.URL() + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if proc.exited() {
		pg.t.Fatalf("pullgate exited during start-up (%v); log:\n%s", proc.cmd.ProcessState, tail(pg.Log(), 60))
	}
	if !answered {
		pg.t.Fatalf("pullgate did not answer GET /v2/ with 200 within 30s; log:\n%s", tail(pg.Log(), 60))
	}
}

// appendLog adds a harness note (such as the command line) to a log file.
func appendLog(path, s string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(s)
}

func (pg *Pullgate) stop() error {
	pg.mu.Lock()
	proc := pg.proc
	pg.mu.Unlock()
	if proc == nil {
		return nil
	}
	return proc.stop(15 * time.Second)
}

// Stop stops pullgate (SIGTERM, then SIGKILL after 15s).
func (pg *Pullgate) Stop() {
	pg.t.Helper()
	if err := pg.stop(); err != nil {
		pg.t.Error(err)
	}
}

// Restart stops pullgate and starts it again with the same arguments, port
// and data directory.
func (pg *Pullgate) Restart() {
	pg.t.Helper()
	pg.Stop()
	pg.start()
}

// Running reports whether the process is still alive.
func (pg *Pullgate) Running() bool {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	return pg.proc != nil && !pg.proc.exited()
}

// URL is "http://127.0.0.1:N" ("https://…" with TLSRoots).
func (pg *Pullgate) URL() string {
	if pg.roots != nil {
		return "https://" + pg.addr
	}
	return "http://" + pg.addr
}

// Client is an HTTP client for URL (trusting TLSRoots when set).
func (pg *Pullgate) Client() *http.Client {
	if pg.roots == nil {
		return &http.Client{}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pg.roots}}}
}

// Addr is "127.0.0.1:N", as used in image references and insecure-registries.
func (pg *Pullgate) Addr() string { return pg.addr }

// DataDir is the --data-dir.
func (pg *Pullgate) DataDir() string { return pg.dataDir }

// Log is everything pullgate wrote to stdout and stderr, across restarts.
func (pg *Pullgate) Log() string { return readLog(pg.logPath, 0) }

// Signal sends sig to the running pullgate (SIGHUP reloads its rules).
func (pg *Pullgate) Signal(sig os.Signal) error {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.proc == nil || pg.proc.exited() {
		return fmt.Errorf("pullgate is not running")
	}
	return pg.proc.cmd.Process.Signal(sig)
}
