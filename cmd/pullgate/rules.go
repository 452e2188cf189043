package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/pullgate/pullgate/scanner"
)

// rules implements `pullgate rules check`: compile the embedded rules and
// any --rules given, list what would be loaded with each rule's category,
// severity and description, warn about rules likely to slow scanning, and
// fail with file:line when something does not compile.
func rules(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: pullgate rules check [--rules PATH]... [--known-bad FILE] [--json]")
		return errUsage
	}
	fs := flag.NewFlagSet("pullgate rules check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var paths listFlag
	fs.Var(&paths, "rules", "extra YARA rule file or folder, repeatable")
	knownBad := fs.String("known-bad", "", "known-bad list (sha256 of files) to check as well")
	asJSON := fs.Bool("json", false, "print the rules as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	opts := scanner.Options{Workers: 1, RulePaths: paths}
	if *knownBad != "" {
		kb, err := scanner.LoadKnownBad(*knownBad)
		if err != nil {
			return err
		}
		opts.KnownBadFiles = kb
	}
	sc, err := scanner.New(opts)
	if err != nil {
		return fmt.Errorf("rules do not compile: %w", err)
	}
	defer sc.Close()

	for _, w := range sc.Warnings() {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			RulesetID string             `json:"ruleset_id"`
			Rules     []scanner.RuleInfo `json:"rules"`
			Warnings  []string           `json:"warnings"`
			KnownBad  int                `json:"known_bad_files"`
		}{sc.RulesetID(), sc.Rules(), sc.Warnings(), opts.KnownBadFiles.Len()})
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tCATEGORY\tSEVERITY\tSOURCE\tDESCRIPTION")
	for _, r := range sc.Rules() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Category, r.Severity, r.Source, r.Description)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ruleset %s: %d rules compiled, %d warnings", sc.RulesetID(), sc.RuleCount(), len(sc.Warnings()))
	if opts.KnownBadFiles.Len() > 0 {
		fmt.Fprintf(stdout, ", %d known-bad file digests", opts.KnownBadFiles.Len())
	}
	fmt.Fprintln(stdout)
	return nil
}
