package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testsync"
)

// The systems of the side-by-side comparison, in the order each round
// runs them.
const (
	sysHold   = "pullgate-hold"
	sysStream = "pullgate-stream"
	sysDist   = "distribution"
)

var systems = []string{sysHold, sysStream, sysDist}

// distributionVersion is the release of distribution whose proxy mode is
// the baseline; the Makefile's deps target installs it (keep both equal).
const distributionVersion = "v3.1.2"

// registryBinary is distribution's registry command: $PULLGATE_BENCH_REGISTRY,
// or where make deps puts it.
func registryBinary() string {
	if p := os.Getenv("PULLGATE_BENCH_REGISTRY"); p != "" {
		return p
	}
	p, _ := filepath.Abs(filepath.Join("..", ".cache", "bin", "distribution-"+distributionVersion, "registry"))
	return p
}

// mirror is one running mirror process in front of the file registry:
// pullgate (built from this tree) or distribution's registry in proxy
// mode, each with fresh storage in its own directory.
type mirror struct {
	system string
	addr   string // host:port
	cmd    *exec.Cmd
	dir    string
	stderr *bytes.Buffer
	exited chan struct{}
}

func (m *mirror) url() string { return "http://" + m.addr }

// cpu is the CPU time (user and system) the mirror has used so far.
func (m *mirror) cpu() time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	rest := string(raw[bytes.LastIndexByte(raw, ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * (time.Second / 100) // USER_HZ
}

// peakRSS is the mirror's VmHWM: the most resident memory it has held.
func (m *mirror) peakRSS() (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("read the status of %s: %w", m.system, err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in the status of %s", m.system)
}

func (m *mirror) stop() {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	os.RemoveAll(m.dir)
}

// freeAddr picks a free loopback port for a child to listen on.
func freeAddr(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startMirror runs system in front of up and waits until it answers /v2/.
func startMirror(b *testing.B, system string, up *fileRegistry) *mirror {
	b.Helper()
	dir, err := os.MkdirTemp("", "pullgate-bench-"+system+"-")
	if err != nil {
		b.Fatal(err)
	}
	m := &mirror{system: system, addr: freeAddr(b), dir: dir, stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	var bin, config string
	switch system {
	case sysDist:
		bin, config = registryBinary(), distributionConfig(m, up)
	default:
		bin, config = pullgateBinary(b), pullgateConfig(b, m, up, strings.TrimPrefix(system, "pullgate-"))
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		b.Fatal(err)
	}
	if system == sysDist {
		m.cmd = exec.Command(bin, "serve", cfgPath)
	} else {
		m.cmd = exec.Command(bin, "serve", "--config", cfgPath)
	}
	m.cmd.Stdout, m.cmd.Stderr = m.stderr, m.stderr
	if err := m.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		b.Fatalf("start %s (%s): %v", system, bin, err)
	}
	go func() { m.cmd.Wait(); close(m.exited) }()
	probe := &http.Client{Timeout: 2 * time.Second}
	ready := testsync.Until(60*time.Second, func() bool {
		select {
		case <-m.exited:
			return true
		default:
		}
		resp, err := probe.Get(m.url() + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	select {
	case <-m.exited:
		os.RemoveAll(dir)
		b.Fatalf("%s exited before it was ready: %s", system, m.stderr.String())
	default:
	}
	if !ready {
		m.stop()
		b.Fatalf("%s did not answer /v2/ within 60s: %s", system, m.stderr.String())
	}
	return m
}

// distributionConfig is distribution's registry in proxy mode as its own
// example configuration sets it up: filesystem storage, the in-memory blob
// descriptor cache, no access log.
func distributionConfig(m *mirror, up *fileRegistry) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  cache:
    blobdescriptor: inmemory
http:
  addr: %s
proxy:
  remoteurl: %s
`, filepath.Join(m.dir, "registry"), m.addr, up.srv.URL)
}

// pullgateConfig is pullgate's defaults (filesystem store, embedded verdict
// store, one scanner worker per CPU) in front of up. The hold is long enough
// for the 4 GiB layer on a busy machine; a clean pull never waits for it.
func pullgateConfig(b *testing.B, m *mirror, up *fileRegistry, mode string) string {
	modeLine := ""
	if gateModeSupported(b) {
		modeLine = "  mode: " + mode + "\n"
	}
	return fmt.Sprintf(`listen: %q
data_dir: %q
log:
  level: error
upstreams:
  docker.io:
    url: %q
gate:
  hold: 10m
%s`, m.addr, filepath.Join(m.dir, "data"), up.srv.URL, modeLine)
}

var (
	pullgateOnce sync.Once
	pullgatePath string
	pullgateErr  error
	modeOnce     sync.Once
	modeOK       bool
)

// pullgateBinary builds cmd/pullgate from this tree once per process.
func pullgateBinary(b *testing.B) string {
	b.Helper()
	pullgateOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pullgate-bench-bin-")
		if err != nil {
			pullgateErr = err
			return
		}
		pullgatePath = filepath.Join(dir, "pullgate")
		cmd := exec.Command("go", "build", "-o", pullgatePath, "./cmd/pullgate")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			pullgateErr = fmt.Errorf("go build ./cmd/pullgate: %w: %s", err, out)
		}
	})
	if pullgateErr != nil {
		b.Fatal(pullgateErr)
	}
	return pullgatePath
}

// gateModeSupported reports whether this tree's pullgate knows gate.mode
// (hold or stream). Until it does, the "hold" and "stream" runs are the
// same program with the same configuration, and the summary says so.
func gateModeSupported(b *testing.B) bool {
	bin := pullgateBinary(b)
	modeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pullgate-bench-mode-")
		if err != nil {
			return
		}
		defer os.RemoveAll(dir)
		cfg := filepath.Join(dir, "config.yaml")
		if os.WriteFile(cfg, []byte("gate:\n  mode: stream\n"), 0o600) != nil {
			return
		}
		// "pullgate rules check" would not read the config; serve with a
		// listen address that cannot be bound fails after the config is
		// read, so only a config error mentions the field.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, _ := exec.CommandContext(ctx, bin, "serve", "--config", cfg, "--listen", "256.0.0.1:1", "--data-dir", dir).CombinedOutput()
		modeOK = !strings.Contains(string(out), "field mode not found")
		if !modeOK {
			results.compareNote("gate.mode is not in this build: the %s and %s runs are the same program with the same configuration (hold)", sysHold, sysStream)
		}
	})
	return modeOK
}
