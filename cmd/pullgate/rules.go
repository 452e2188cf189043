package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/pullgate/pullgate/scanner"
)

// rules implements `pullgate rules check`: compile the embedded rules and
// any --rules given, and say what would be loaded, or where it fails.
func rules(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: pullgate rules check [--rules PATH]...")
		return errUsage
	}
	fs := flag.NewFlagSet("pullgate rules check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var paths listFlag
	fs.Var(&paths, "rules", "extra YARA rule file or folder, repeatable")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	sc, err := scanner.New(scanner.Options{Workers: 1, RulePaths: paths})
	if err != nil {
		return fmt.Errorf("rules do not compile: %w", err)
	}
	defer sc.Close()
	fmt.Fprintf(stdout, "ruleset %s: %d rules compiled\n", sc.RulesetID(), sc.RuleCount())
	return nil
}
