package s3server

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testsync"
)

// Bucket is the bucket every server starts with.
const Bucket = "pullgate"

// Credentials the server accepts (s3rver's own).
const (
	AccessKey = "S3RVER"
	SecretKey = "S3RVER"
)

// Server is a running s3rver.
type Server struct {
	Endpoint string // "http://127.0.0.1:N"
	cmd      *exec.Cmd
}

var (
	shared    *Server
	sharedErr error
	once      sync.Once
)

// Shared returns the test binary's one s3rver, started on first use and
// stopped when the binary exits. Tests keep apart by using their own root
// directory in the bucket.
func Shared(t testing.TB) *Server {
	t.Helper()
	once.Do(func() { shared, sharedErr = start() })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func binary() (string, error) {
	if p := os.Getenv("PULLGATE_S3RVER"); p != "" {
		return p, nil
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "npm", "node_modules", ".bin", "s3rver")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("s3rver is not installed at %s: run make deps (it runs npm ci in internal/s3server/npm)", p)
	}
	return p, nil
}

func start() (*Server, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "pullgate-s3-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-d", dir, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "--configure-bucket", Bucket, "--silent")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// The server goes when the test binary does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start s3rver: %w", err)
	}
	s := &Server{Endpoint: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd}
	answered := testsync.Until(30*time.Second, func() bool {
		resp, err := http.Get(s.Endpoint + "/" + Bucket)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !answered {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("s3rver did not answer on %s within 30s", s.Endpoint)
	}
	return s, nil
}
