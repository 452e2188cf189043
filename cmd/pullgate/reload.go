package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/scanner"
)

// rulesPoll is how often the rule files are checked for changes on disk.
const rulesPoll = 5 * time.Second

// reloader changes the scanner's rules in place on SIGHUP and when a rule
// file changes, without a restart and without a second worker pool. A
// ruleset that does not compile is refused, with the compiler's file:line,
// and the running one is kept. After a change the store is rescanned in
// the background under the new rules.
type reloader struct {
	cfg Config
	srv *proxy.Server
	// sc is the scanner the server runs; its rules are reloaded in place.
	// Without it a reload is refused and the running rules are kept.
	sc    *scanner.Scanner
	log   *slog.Logger
	print string
}

func (r *reloader) run(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	r.print = rulesFingerprint(r.cfg.Rules)
	tick := time.NewTicker(rulesPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if r.reload("SIGHUP") {
				go r.rescan(ctx)
			}
		case <-tick.C:
			if p := rulesFingerprint(r.cfg.Rules); p != r.print && r.reload("rule files changed") {
				go r.rescan(ctx)
			}
		}
	}
}

// reload recompiles the rules and reports whether the ruleset changed.
func (r *reloader) reload(why string) bool {
	r.print = rulesFingerprint(r.cfg.Rules)
	if r.sc == nil {
		r.log.Error("rules reload failed; keeping the current rules", "reason", why, "err", "no scanner to reload")
		return false
	}
	opts, err := scannerOptions(r.cfg)
	if err != nil {
		r.log.Error("rules reload failed; keeping the current rules", "reason", why, "err", err)
		return false
	}
	previous := r.sc.RulesetID()
	if err := r.sc.Reload(opts); err != nil {
		r.log.Error("rules reload failed; keeping the current rules", "reason", why, "err", err)
		return false
	}
	current := r.sc.RulesetID()
	r.log.Info("rules reloaded", "reason", why, "ruleset", current, "rules", r.sc.RuleCount(), "previous", previous)
	return previous != current
}

// rescan checks the stored blobs under the current rules, behind
// interactive scans.
func (r *reloader) rescan(ctx context.Context) {
	start := time.Now()
	rep, err := r.srv.Rescan(ctx)
	attrs := []any{"checked", rep.Checked, "scanned", rep.Scanned, "refused", len(rep.Refused), "failed", rep.Failed, "duration", time.Since(start).String()}
	if err != nil {
		r.log.Warn("rescan incomplete", append(attrs, "err", err)...)
		return
	}
	r.log.Info("rescan done", attrs...)
}

// rulesFingerprint summarises the rule files' names, sizes and times, so a
// change on disk is noticed without reading them.
func rulesFingerprint(paths []string) string {
	var lines []string
	for _, p := range paths {
		_ = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				lines = append(lines, path+" error")
				return nil
			}
			if d.IsDir() {
				return nil
			}
			if info, err := d.Info(); err == nil {
				lines = append(lines, fmt.Sprintf("%s %d %d", path, info.Size(), info.ModTime().UnixNano()))
			}
			return nil
		})
	}
	sort.Strings(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))
}
