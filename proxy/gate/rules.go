package gate

import (
	"context"
	"time"

	"github.com/pullgate/pullgate/scanner"
)

// RulesSource says where the scanner's rules come from, so that Run can
// reload them in place when their files change or ReloadRules is called.
type RulesSource struct {
	// Load returns the options to reload the scanner with: the rule
	// paths, the known-bad list, the same workers and limits. nil: the
	// rules never change while running.
	Load func() (scanner.Options, error)
	// Poll is how often the rule files are checked for changes on disk.
	// Default 5s.
	Poll time.Duration
}

// ReloadRules asks Run to reload the rules now (an operator's SIGHUP). A
// request made while one is waiting joins it.
func (g *Gate) ReloadRules(why string) {
	select {
	case g.reloads <- why:
	default:
	}
}

// watchRules reloads the rules when their files change on disk or when
// asked, and rescans the store under the new rules, behind interactive
// scans. A ruleset that does not compile is refused, with the compiler's
// file:line, and the running one is kept.
func (g *Gate) watchRules(ctx context.Context) {
	print := g.rulesPrint
	tick := time.NewTicker(g.opts.Rules.Poll)
	defer tick.Stop()
	for {
		why := "rule files changed"
		select {
		case <-ctx.Done():
			return
		case why = <-g.reloads:
		case <-tick.C:
			if scanner.Fingerprint(g.opts.Scanner.RulePaths()) == print {
				continue
			}
		}
		var changed bool
		changed, print = g.reloadRules(why)
		if changed {
			g.askRescan()
		}
	}
}

// reloadRules recompiles the rules in place and reports whether the
// ruleset changed, with the fingerprint of the files as it read them: a
// change that does not compile is reported once, not at every poll.
func (g *Gate) reloadRules(why string) (bool, string) {
	sc := g.opts.Scanner
	print := scanner.Fingerprint(sc.RulePaths())
	opts, err := g.opts.Rules.Load()
	if err != nil {
		g.log.Error("rules reload failed; keeping the current rules", "reason", why, "err", err)
		return false, print
	}
	previous := sc.RulesetID()
	if err := sc.Reload(opts); err != nil {
		g.log.Error("rules reload failed; keeping the current rules", "reason", why, "err", err)
		return false, print
	}
	current := sc.RulesetID()
	g.log.Info("rules reloaded", "reason", why, "ruleset", current, "rules", sc.RuleCount(), "previous", previous)
	return previous != current, print
}
