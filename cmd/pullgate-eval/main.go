package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

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
	// debootstrap changes into its target before it writes there, so a
	// relative cache folder must be made absolute first.
	dir, err := filepath.Abs(*cache)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pullgate-eval:", err)
		os.Exit(1)
	}
	if err := run(dir, *workers, *hostUsr, *mirror); err != nil {
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
