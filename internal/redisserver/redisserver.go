package redisserver

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testsync"
)

// EnvBinary names an environment variable that, when set, overrides where
// redis-server is found.
const EnvBinary = "PULLGATE_REDIS_SERVER"

const (
	defaultBinary = "/usr/bin/redis-server"
	startTimeout  = 10 * time.Second
	stopTimeout   = 10 * time.Second
	startAttempts = 3 // a free port may be taken between probing and binding
)

var errPortInUse = errors.New("port taken by another process")

// Server is one running redis-server.
type Server struct {
	t      testing.TB
	binary string
	dir    string
	args   []string // extra arguments from StartWith
	port   int

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	output  *testsync.Buffer
	stopped bool
}

// Start runs redis-server without persistence and returns once it answers
// PING. Cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t)
}

// StartWith is Start with extra redis-server arguments appended after the
// defaults (--port, --bind, --save "", --appendonly no, --dir), so e.g.
// StartWith(t, "--appendonly", "yes") turns persistence on.
func StartWith(t testing.TB, args ...string) *Server {
	t.Helper()
	s := &Server{t: t, binary: binary(t), dir: t.TempDir(), args: args}
	t.Cleanup(s.Stop)

	var lastErr error
	for range startAttempts {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redisserver: find a free port: %v", err)
		}
		s.port = port
		if lastErr = s.start(); lastErr == nil {
			return s
		}
		if !errors.Is(lastErr, errPortInUse) {
			break
		}
	}
	t.Fatalf("redisserver: %v", lastErr)
	return nil
}

func binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("redisserver: %s=%s: %v; run `make deps` to install redis-server", EnvBinary, p, err)
		}
		return p
	}
	if _, err := os.Stat(defaultBinary); err == nil {
		return defaultBinary
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	t.Fatalf("redisserver: redis-server not found at %s or on $PATH; run `make deps` to install it (or set %s)", defaultBinary, EnvBinary)
	return ""
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start launches the process on s.port and waits until it answers PING or
// exits.
func (s *Server) start() error {
	args := append([]string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "",
	}, s.args...)
	cmd := exec.Command(s.binary, args...)
	out := &testsync.Buffer{}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.binary, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	s.mu.Lock()
	s.cmd, s.exited, s.output, s.stopped = cmd, exited, out, false
	s.mu.Unlock()

	up := false
	testsync.Until(startTimeout, func() bool {
		if ping(s.Addr()) == nil {
			up = true
			return true
		}
		select {
		case <-exited:
			return true
		default:
			return false
		}
	})
	switch {
	case up:
		return nil
	case isClosed(exited):
		err := fmt.Errorf("redis-server on port %d exited before answering PING:\n%s", s.port, out.String())
		if strings.Contains(out.String(), "in use") {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		return err
	default:
		s.kill()
		return fmt.Errorf("redis-server on port %d did not answer PING within %s:\n%s", s.port, startTimeout, out.String())
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// ping sends one PING and accepts PONG, or NOAUTH from a server started
// with --requirepass: either way it is up.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
		return nil
	}
	return fmt.Errorf("unexpected PING reply %q", strings.TrimSpace(line))
}

// Addr returns host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL returns a redis:// URL for database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// PID returns the process id of the running server.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// Stop terminates the server (SIGTERM, so it saves if persistence is on;
// SIGKILL if it does not exit in time) and waits for it. Stopping twice is
// harmless.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.stopped {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		s.t.Errorf("redisserver: redis-server pid %d ignored SIGTERM for %s and was killed", s.cmd.Process.Pid, stopTimeout)
	}
}

// kill stops a server that never came up.
func (s *Server) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.stopped = true
}

// Restart stops the server and starts it again on the same port and
// directory, with the same arguments.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("redisserver: restart: %v", err)
	}
}
