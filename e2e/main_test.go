package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
)

// TestMain runs the suite inside a fresh network namespace that has only
// loopback, so that nothing a test starts can reach the Internet: dockerd
// retries every failed mirror pull against registry-1.docker.io, and here
// that fails fast (no route, no DNS) instead of pulling the real image.
//
// The outer process (as root) builds cmd/pullgate while the module proxy is
// still reachable, then re-executes this test binary under
// `unshare --net` with lo brought up, forwarding arguments and exit status.
func TestMain(m *testing.M) {
	if os.Getenv(envInNetns) == "1" {
		os.Exit(runInside(m))
	}
	os.Exit(runOutside())
}

const (
	// envInNetns marks the re-executed test binary inside the namespace.
	envInNetns = "PULLGATE_E2E_NETNS"
	// EnvBinary, when set before `go test ./e2e/`, names a prebuilt pullgate
	// binary to use instead of building cmd/pullgate.
	EnvBinary = "PULLGATE_E2E_BINARY"
	// envBuildError carries the outer build's failure to the tests that
	// need the binary.
	envBuildError = "PULLGATE_E2E_BUILD_ERROR"
)

func runInside(m *testing.M) int {
	if err := checkIsolated(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: refusing to run outside an isolated network namespace: %v\n", err)
		return 2
	}
	dir, err := os.MkdirTemp("", "pullgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}
	workDir = dir
	code := m.Run()
	stopSharedDockerd()
	os.RemoveAll(dir)
	return code
}

// checkIsolated makes sure the only network interface is an up loopback.
func checkIsolated() error {
	ifaces, err := net.Interfaces()
	if err != nil {
		return err
	}
	loUp := false
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback == 0 {
			return fmt.Errorf("interface %s is not loopback", ifc.Name)
		}
		loUp = loUp || ifc.Flags&net.FlagUp != 0
	}
	if !loUp {
		return errors.New("loopback is down")
	}
	return nil
}

func runOutside() int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: these tests must run as root: they start dockerd and run the suite in its own network namespace (unshare --net). Run: sudo go test ./e2e/")
		return 2
	}
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s is required (apt-get install util-linux iproute2): %v\n", tool, err)
			return 2
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}

	env := append(withoutProxyEnv(os.Environ()), envInNetns+"=1")
	if os.Getenv(EnvBinary) == "" {
		dir, err := os.MkdirTemp("", "pullgate-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 2
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "pullgate")
		if out, err := buildPullgate(bin, nil); err != nil {
			// Only the tests that need pullgate fail, with this message.
			msg := fmt.Sprintf("%v\n%s", err, out)
			if len(msg) > 8000 {
				msg = msg[:8000] + "\n[...]"
			}
			env = append(env, envBuildError+"="+msg)
		} else {
			env = append(env, EnvBinary+"="+bin)
		}
	}

	cmd := exec.Command("unshare", append([]string{"--net", "--", "/bin/sh", "-c", `ip link set lo up && exec "$0" "$@"`, self}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: start the suite in a new network namespace: %v\n", err)
		return 2
	}
	// unshare and sh exec the test binary, so the PID is the suite's.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	signal.Stop(sigs)
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() > 0 {
			return exit.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "e2e: suite in network namespace: %v\n", err)
		return 1
	}
	return 0
}
