package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/pullgate/pullgate/scanner"
)

// ruleCounts are one rule's files found among positives and negatives.
type ruleCounts struct{ tpFiles, fpFiles, fpHigh int }

// tally is what report counts over the outcomes.
type tally struct {
	perRule map[string]*ruleCounts

	posImages, posBlocked, negImages, negBlocked, negWarned int
	posFiles, posFilesFound, negFiles, negFilesFlagged      int64
	negFilesBlocking                                        int64
	missed, falseBlocks                                     []string
	negBytes                                                int64
	negTime                                                 time.Duration
	throughput                                              []string
}

// report prints the figures as Markdown.
func report(w io.Writer, sc *scanner.Scanner, outs []outcome) {
	t := &tally{perRule: map[string]*ruleCounts{}}
	for _, r := range sc.Rules() {
		t.perRule[r.Name] = &ruleCounts{}
	}
	for _, o := range outs {
		byFile := map[string][]scanner.Finding{}
		for _, f := range o.findings {
			byFile[f.FilePath()] = append(byFile[f.FilePath()], f)
		}
		if o.img.positive {
			t.positive(o, byFile)
		} else {
			t.negative(o, byFile)
		}
	}
	t.printSummary(w, sc)
	t.printRules(w, sc)
	printNegatives(w, outs)
	t.printThroughput(w)
}

func (t *tally) rule(name string) *ruleCounts {
	c := t.perRule[name]
	if c == nil {
		c = &ruleCounts{}
		t.perRule[name] = c
	}
	return c
}

// positive counts a synthetic positive image: refused or missed, and per
// file whether any rule found it.
func (t *tally) positive(o outcome, byFile map[string][]scanner.Finding) {
	t.posImages++
	if o.decision.Blocked {
		t.posBlocked++
	} else {
		t.missed = append(t.missed, o.img.name)
	}
	paths := slices.Clone(o.img.files)
	if o.img.config != nil {
		paths = append(paths, "config")
	}
	for _, p := range paths {
		t.posFiles++
		var fs []scanner.Finding
		if p == "config" {
			for fp, ffs := range byFile {
				if strings.HasPrefix(fp, "config:") {
					fs = append(fs, ffs...)
				}
			}
		} else {
			fs = byFile[p]
		}
		if len(fs) > 0 {
			t.posFilesFound++
		}
		for _, rule := range ruleSet(fs) {
			t.rule(rule).tpFiles++
		}
	}
}

// negative counts a negative image: false blocks, warnings, each file
// with a finding as a false positive of its rules, and its throughput.
func (t *tally) negative(o outcome, byFile map[string][]scanner.Finding) {
	t.negImages++
	t.negFiles += o.files
	if o.decision.Blocked {
		t.negBlocked++
		t.falseBlocks = append(t.falseBlocks, fmt.Sprintf("%s: %s", o.img.name, o.decision.Reason))
	} else if len(o.decision.Warnings) > 0 {
		t.negWarned++
	}
	for _, fs := range byFile {
		t.negFilesFlagged++
		if scanner.DefaultPolicy().Decide(fs).Blocked {
			t.negFilesBlocking++
		}
		for _, f := range fs {
			c := t.rule(f.Rule)
			c.fpFiles++
			if f.Severity == scanner.SeverityHigh {
				c.fpHigh++
			}
		}
	}
	if o.bytes > 64<<20 {
		t.negBytes += o.bytes
		t.negTime += o.elapsed
		t.throughput = append(t.throughput, fmt.Sprintf("| %s | %d | %.0f | %.1f | %.0f |", o.img.name, o.files, float64(o.bytes)/1e6, o.elapsed.Seconds(), float64(o.bytes)/1e6/o.elapsed.Seconds()))
	}
}

func (t *tally) printSummary(w io.Writer, sc *scanner.Scanner) {
	fmt.Fprintf(w, "## Evaluation (`make eval`, %s)\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(w, "Ruleset %s, %d rules, %d workers, libyara %s.\n\n", sc.RulesetID()[:12], sc.RuleCount(), sc.Workers(), "4.2")
	fmt.Fprintln(w, "| | images | refused | files | flagged |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| synthetic positives | %d | %d (%.1f%%) | %d | %d found |\n", t.posImages, t.posBlocked, pct(t.posBlocked, t.posImages), t.posFiles, t.posFilesFound)
	fmt.Fprintf(w, "| negatives (real + near misses) | %d | %d false blocks, %d warned | %d | %d with a finding, %d that would block alone |\n\n", t.negImages, t.negBlocked, t.negWarned, t.negFiles, t.negFilesFlagged, t.negFilesBlocking)
	if len(t.missed) > 0 {
		fmt.Fprintf(w, "Missed positives: %s\n\n", strings.Join(t.missed, ", "))
	}
	if len(t.falseBlocks) > 0 {
		fmt.Fprintf(w, "False blocks:\n\n")
		for _, f := range t.falseBlocks {
			fmt.Fprintf(w, "- %s\n", f)
		}
		fmt.Fprintln(w)
	}
}

func (t *tally) printRules(w io.Writer, sc *scanner.Scanner) {
	fmt.Fprintln(w, "Per rule (files; a positive file counts for every rule that found it; a negative file with a finding is a false positive of that rule, a warning unless the rule is high):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| rule | severity | TP files | FP files (negatives) |")
	fmt.Fprintln(w, "|---|---|---:|---:|")
	for _, r := range sc.Rules() {
		c := t.perRule[r.Name]
		fmt.Fprintf(w, "| %s | %s | %d | %d |\n", r.Name, r.Severity, c.tpFiles, c.fpFiles)
	}
	fmt.Fprintln(w)
}

func printNegatives(w io.Writer, outs []outcome) {
	fmt.Fprintln(w, "Negatives by source (per image: decision; per file: findings):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| image | files | findings | decision |")
	fmt.Fprintln(w, "|---|---:|---|---|")
	for _, o := range outs {
		if o.img.positive {
			continue
		}
		d := "clean"
		switch {
		case o.decision.Blocked:
			d = "**blocked**"
		case len(o.decision.Warnings) > 0:
			d = "warn"
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s |\n", o.img.name, o.files, summarize(o.findings), d)
	}
	fmt.Fprintln(w)
}

func (t *tally) printThroughput(w io.Writer) {
	fmt.Fprintln(w, "Throughput (negative images over 64 MB, streamed from disk as tar, whole pipeline: walk, YARA, decision):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| image | files | MB | seconds | MB/s |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, line := range t.throughput {
		fmt.Fprintln(w, line)
	}
	if t.negTime > 0 {
		fmt.Fprintf(w, "| all | | %.0f | %.1f | %.0f |\n", float64(t.negBytes)/1e6, t.negTime.Seconds(), float64(t.negBytes)/1e6/t.negTime.Seconds())
	}
}

func ruleSet(fs []scanner.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Rule)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// summarize lists rules with the number of files each matched.
func summarize(fs []scanner.Finding) string {
	n := map[string]int{}
	for _, f := range fs {
		n[f.Rule]++
	}
	if len(n) == 0 {
		return "none"
	}
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", r, n[r]))
	}
	return strings.Join(parts, ", ")
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}
