package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// errUsage means the command line was wrong; the flag package already said how.
var errUsage = errors.New("usage")

const usage = `pullgate: a registry mirror that refuses images carrying cryptominers

usage:
  pullgate serve [flags]          run the mirror (pullgate serve -h for flags)
  pullgate scan [flags] INPUT...  scan a root filesystem, image tarball, OCI layout, layer or image reference
  pullgate rules check [flags]    compile the rules and list them
  pullgate warm [flags] IMAGE...  ask a running pullgate to fetch and scan images
  pullgate verdicts ls|show|allow|deny|rm   blocked images and overrides, via the admin API
  pullgate version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run returns the exit code: 0 fine, 1 refused (scan) or failed, 2 usage.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], stderr)
	case "scan":
		return scan(args[1:], stdout, stderr)
	case "warm":
		return warm(args[1:], stdout, stderr)
	case "verdicts":
		err = verdicts(args[1:], stdout, stderr)
	case "rules":
		err = rules(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "pullgate", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "pullgate: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case errors.Is(err, errUsage):
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "pullgate:", err)
		return 1
	}
	return 0
}
