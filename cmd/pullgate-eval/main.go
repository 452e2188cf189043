// Command pullgate-eval measures the default ruleset on a labelled corpus
// and prints, per rule and overall, true and false positives per file and
// per image, and throughput.
//
// Positives are synthetic and harmless (internal/samples): files carrying
// the indicators of each family, configs, scripts and command lines, each
// case packed as a layer in tar, gzip and zstd; and Go programs packed by a
// real UPX (internal/upx). Negatives are real: this
// machine's /usr, a Debian bookworm root filesystem made with debootstrap,
// and Debian packages that sit close to the line (a Monero node, Bitcoin
// wallets, RandomX, rootkit and virus scanners, a Go toolchain), fetched
// with apt-get download and unpacked with dpkg-deb. Everything fetched is
// cached under -cache. `make eval` runs it.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/upx"
	"github.com/pullgate/pullgate/scanner"
)

// nearLinePackages are the Debian packages whose content sits close to
// what the rules look for.
var nearLinePackages = []string{
	"monero", "electrum", "python3-electrum", "python3-bitcoinlib", "librandomx0",
	"chkrootkit", "rkhunter", "clamav", "libclamav12", "clamav-base", "golang-go", "golang-1.19-go",
}

func main() {
	cache := flag.String("cache", ".cache/eval", "folder for the Debian root filesystem and packages (ignored by git)")
	workers := flag.Int("workers", 0, "scanner workers (default: CPU count)")
	hostUsr := flag.String("usr", "/usr", "this machine's /usr, scanned as one negative image; empty to skip")
	mirror := flag.String("mirror", "http://deb.debian.org/debian", "Debian mirror for debootstrap")
	flag.Parse()
	if err := run(*cache, *workers, *hostUsr, *mirror); err != nil {
		fmt.Fprintln(os.Stderr, "pullgate-eval:", err)
		os.Exit(1)
	}
}

// image is one labelled image of the corpus.
type image struct {
	name     string
	positive bool
	kind     string // family for positives, source for negatives
	// layer produces the layer blob; config is the image config (or nil).
	layer  func() (io.Reader, error)
	config []byte
	// files are the paths of the layer's files (positives only; negatives
	// count files as scanned).
	files []string
	want  []string // positives: rules meant to find it
}

// outcome is what the scanner and the default policy made of one image.
type outcome struct {
	img      image
	findings []scanner.Finding
	decision scanner.Decision
	files    int64
	bytes    int64
	elapsed  time.Duration
	err      error
}

func run(cache string, workers int, hostUsr, mirror string) error {
	sc, err := scanner.New(scanner.Options{Workers: workers})
	if err != nil {
		return err
	}
	defer sc.Close()

	negatives, err := prepareNegatives(cache, hostUsr, mirror)
	if err != nil {
		return err
	}
	progs, err := upx.Build()
	if err != nil {
		return fmt.Errorf("real UPX samples: %w", err)
	}
	realPos, realNear := progs.Cases()
	methodPos, err := upx.MethodCases()
	if err != nil {
		return fmt.Errorf("real UPX samples: %w", err)
	}
	corpus := append(positives(samples.Positives(), realPos, methodPos), nearMisses(samples.NearMisses(), realNear)...)
	corpus = append(corpus, negatives...)

	var outs []outcome
	for _, img := range corpus {
		o := scan(sc, img)
		if o.err != nil {
			return fmt.Errorf("scan %s: %w", img.name, o.err)
		}
		outs = append(outs, o)
		fmt.Fprintf(os.Stderr, "%-45s %-8s files %7d  %8.1f MB  %6.2fs  blocked %v\n", img.name, label(img), o.files, float64(o.bytes)/1e6, o.elapsed.Seconds(), o.decision.Blocked)
	}
	report(os.Stdout, sc, outs)
	return nil
}

func label(img image) string {
	if img.positive {
		return "positive"
	}
	return "negative"
}

func scan(sc *scanner.Scanner, img image) outcome {
	o := outcome{img: img}
	start := time.Now()
	if img.layer != nil {
		r, err := img.layer()
		if err != nil {
			o.err = err
			return o
		}
		res, err := sc.ScanLayer(context.Background(), r, scanner.Interactive)
		if c, ok := r.(io.Closer); ok {
			c.Close()
		}
		if err != nil {
			o.err = err
			return o
		}
		o.findings = append(o.findings, res.Findings...)
		o.files, o.bytes = res.Files, res.Bytes
	}
	if img.config != nil {
		res, err := sc.ScanConfig(context.Background(), img.config, scanner.Interactive)
		if err != nil {
			o.err = err
			return o
		}
		o.findings = append(o.findings, res.Findings...)
	}
	o.elapsed = time.Since(start)
	o.decision = scanner.DefaultPolicy().Decide(o.findings)
	return o
}

// positives packs every synthetic case as a layer in each encoding.
func positives(sets ...[]samples.Case) []image {
	var out []image
	for _, c := range slices.Concat(sets...) {
		for _, enc := range encodings {
			out = append(out, caseImage(c, enc, true))
		}
	}
	return out
}

// nearMisses are synthetic negatives: weak indicators in benign places.
func nearMisses(sets ...[]samples.Case) []image {
	var out []image
	for _, c := range slices.Concat(sets...) {
		out = append(out, caseImage(c, encodings[1], false))
	}
	return out
}

var encodings = []struct {
	name string
	fn   func([]byte) []byte
}{
	{"tar", func(b []byte) []byte { return b }},
	{"gzip", gzipBytes},
	{"zstd", zstdBytes},
}

func caseImage(c samples.Case, enc struct {
	name string
	fn   func([]byte) []byte
}, positive bool) image {
	img := image{name: "synthetic/" + c.Name + "." + enc.name, positive: positive, kind: c.Family, config: c.Config, want: c.Rules}
	if !positive {
		img.name = "near-miss/" + c.Name
	}
	if len(c.Files) > 0 {
		blob := enc.fn(layerTar(c.Files))
		img.layer = func() (io.Reader, error) { return bytes.NewReader(blob), nil }
		for _, f := range c.Files {
			img.files = append(img.files, f.Path)
		}
	}
	return img
}

func layerTar(files []samples.File) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(f.Path, "/"), Mode: f.Mode, Size: int64(len(f.Data)), Typeflag: tar.TypeReg}); err != nil {
			panic(err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			panic(err)
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func zstdBytes(b []byte) []byte {
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		panic(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// prepareNegatives makes sure the Debian root filesystem and packages are
// in the cache and returns every negative image.
func prepareNegatives(cache, hostUsr, mirror string) ([]image, error) {
	var out []image
	if hostUsr != "" {
		out = append(out, dirImage("host"+hostUsr, "host", hostUsr))
	}
	rootfs := filepath.Join(cache, "rootfs")
	if _, err := os.Stat(filepath.Join(rootfs, "etc/os-release")); err != nil {
		fmt.Fprintln(os.Stderr, "debootstrap bookworm into", rootfs)
		tmp := rootfs + ".tmp"
		os.RemoveAll(tmp)
		if err := command("debootstrap", "bookworm", tmp, mirror); err != nil {
			return nil, fmt.Errorf("debootstrap (make deps installs it; needs root): %w", err)
		}
		// A rootfs left incomplete (no os-release) is replaced whole.
		if err := os.RemoveAll(rootfs); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, rootfs); err != nil {
			return nil, err
		}
	}
	out = append(out, dirImage("debian-bookworm-rootfs", "debootstrap", rootfs))

	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return nil, err
	}
	for _, pkg := range nearLinePackages {
		matches, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
		if len(matches) == 0 {
			cmd := exec.Command("apt-get", "download", pkg)
			cmd.Dir = debs
			cmd.Stderr = os.Stderr
			if err := cmd.Run(); err != nil {
				return nil, fmt.Errorf("apt-get download %s: %w", pkg, err)
			}
			matches, _ = filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
			if len(matches) == 0 {
				return nil, fmt.Errorf("apt-get download %s left no .deb in %s", pkg, debs)
			}
		}
		dir := filepath.Join(cache, "pkgs", pkg)
		if _, err := os.Stat(dir); err != nil {
			tmp := dir + ".tmp"
			os.RemoveAll(tmp)
			if err := os.MkdirAll(tmp, 0o755); err != nil {
				return nil, err
			}
			if err := command("dpkg-deb", "-x", matches[len(matches)-1], tmp); err != nil {
				return nil, err
			}
			if err := os.Rename(tmp, dir); err != nil {
				return nil, err
			}
		}
		out = append(out, dirImage("debian-pkg/"+pkg, "apt-get download", dir))
	}
	return out, nil
}

func command(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// dirImage is a negative image whose layer is a folder, streamed as a tar
// while it is scanned so the real walker runs over it.
func dirImage(name, kind, dir string) image {
	return image{name: name, kind: kind, layer: func() (io.Reader, error) {
		if _, err := os.Stat(dir); err != nil {
			return nil, err
		}
		return scanner.DirLayer(dir, true), nil
	}}
}

// report prints the figures as Markdown.
func report(w io.Writer, sc *scanner.Scanner, outs []outcome) {
	type counts struct{ tpFiles, fpFiles, fpHigh int }
	perRule := map[string]*counts{}
	for _, r := range sc.Rules() {
		perRule[r.Name] = &counts{}
	}
	get := func(rule string) *counts {
		c := perRule[rule]
		if c == nil {
			c = &counts{}
			perRule[rule] = c
		}
		return c
	}

	var (
		posImages, posBlocked, negImages, negBlocked, negWarned int
		posFiles, posFilesFound, negFiles, negFilesFlagged      int64
		negFilesBlocking                                        int64
		missed, falseBlocks                                     []string
		negBytes                                                int64
		negTime                                                 time.Duration
		throughput                                              []string
	)
	for _, o := range outs {
		byFile := map[string][]scanner.Finding{}
		for _, f := range o.findings {
			byFile[f.FilePath()] = append(byFile[f.FilePath()], f)
		}
		if o.img.positive {
			posImages++
			if o.decision.Blocked {
				posBlocked++
			} else {
				missed = append(missed, o.img.name)
			}
			paths := slices.Clone(o.img.files)
			if o.img.config != nil {
				paths = append(paths, "config")
			}
			for _, p := range paths {
				posFiles++
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
					posFilesFound++
				}
				for _, rule := range ruleSet(fs) {
					get(rule).tpFiles++
				}
			}
			continue
		}
		negImages++
		negFiles += o.files
		if o.decision.Blocked {
			negBlocked++
			falseBlocks = append(falseBlocks, fmt.Sprintf("%s: %s", o.img.name, o.decision.Reason))
		} else if len(o.decision.Warnings) > 0 {
			negWarned++
		}
		for _, fs := range byFile {
			negFilesFlagged++
			if scanner.DefaultPolicy().Decide(fs).Blocked {
				negFilesBlocking++
			}
			for _, f := range fs {
				c := get(f.Rule)
				c.fpFiles++
				if f.Severity == scanner.SeverityHigh {
					c.fpHigh++
				}
			}
		}
		if o.bytes > 64<<20 {
			negBytes += o.bytes
			negTime += o.elapsed
			throughput = append(throughput, fmt.Sprintf("| %s | %d | %.0f | %.1f | %.0f |", o.img.name, o.files, float64(o.bytes)/1e6, o.elapsed.Seconds(), float64(o.bytes)/1e6/o.elapsed.Seconds()))
		}
	}

	fmt.Fprintf(w, "## Evaluation (`make eval`, %s)\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(w, "Ruleset %s, %d rules, %d workers, libyara %s.\n\n", sc.RulesetID()[:12], sc.RuleCount(), sc.Workers(), "4.2")
	fmt.Fprintln(w, "| | images | refused | files | flagged |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| synthetic positives | %d | %d (%.1f%%) | %d | %d found |\n", posImages, posBlocked, pct(posBlocked, posImages), posFiles, posFilesFound)
	fmt.Fprintf(w, "| negatives (real + near misses) | %d | %d false blocks, %d warned | %d | %d with a finding, %d that would block alone |\n\n", negImages, negBlocked, negWarned, negFiles, negFilesFlagged, negFilesBlocking)
	if len(missed) > 0 {
		fmt.Fprintf(w, "Missed positives: %s\n\n", strings.Join(missed, ", "))
	}
	if len(falseBlocks) > 0 {
		fmt.Fprintf(w, "False blocks:\n\n")
		for _, f := range falseBlocks {
			fmt.Fprintf(w, "- %s\n", f)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "Per rule (files; a positive file counts for every rule that found it; a negative file with a finding is a false positive of that rule, a warning unless the rule is high):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| rule | severity | TP files | FP files (negatives) |")
	fmt.Fprintln(w, "|---|---|---:|---:|")
	for _, r := range sc.Rules() {
		c := perRule[r.Name]
		fmt.Fprintf(w, "| %s | %s | %d | %d |\n", r.Name, r.Severity, c.tpFiles, c.fpFiles)
	}
	fmt.Fprintln(w)
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
	fmt.Fprintln(w, "Throughput (negative images over 64 MB, streamed from disk as tar, whole pipeline: walk, YARA, decision):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| image | files | MB | seconds | MB/s |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, t := range throughput {
		fmt.Fprintln(w, t)
	}
	if negTime > 0 {
		fmt.Fprintf(w, "| all | | %.0f | %.1f | %.0f |\n", float64(negBytes)/1e6, negTime.Seconds(), float64(negBytes)/1e6/negTime.Seconds())
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
