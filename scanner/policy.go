package scanner

import (
	"fmt"
	"slices"
	"strings"
)

// Action is what a Policy does with the findings of one category.
type Action string

const (
	// ActionBlock: any finding of the category refuses the image.
	ActionBlock Action = "block"
	// ActionWarn: findings of the category are reported but never refuse.
	ActionWarn Action = "warn"
	// ActionIgnore: findings of the category are dropped.
	ActionIgnore Action = "ignore"
	// ActionDefault (the empty action): decided by severity.
	ActionDefault Action = ""
)

// Categories the default rules use. Operator rules may add others;
// CategoryCustom is what a rule without meta gets.
const (
	CategoryMiner       = "miner"
	CategoryMinerConfig = "miner-config"
	CategoryDropper     = "dropper"
	CategoryPacker      = "packer"
	CategoryPool        = "pool"
	CategoryWallet      = "wallet"
	CategoryKnownBad    = "known-bad"
	CategoryArchive     = "archive"
	CategoryCustom      = defaultCategory
)

// Policy turns the findings of one image (every layer and its config,
// together) into a Decision. The zero Policy is DefaultPolicy without the
// packer corroboration.
//
// Without a category action, severity decides: a high finding blocks; a
// medium one blocks only together with a medium finding of a different
// rule (MediumToBlock distinct rules); a low one only warns. A packed
// executable is the exception that makes weak evidence count: when the
// image has a packer finding, the packer and every low finding of a
// PackerCorroborators category count as medium indicators, so a packed
// binary next to a wallet address blocks while a packed Go tool alone
// only warns. See docs/detection.md.
type Policy struct {
	// Actions per category ("miner", "packer", ...); missing categories
	// are decided by severity.
	Actions map[string]Action
	// MediumToBlock is how many different rules must have medium findings
	// in one image for them to block together; 0 means 2.
	MediumToBlock int
	// PackerCorroborators are the categories whose low findings count as
	// medium indicators in an image that also carries a packed executable.
	PackerCorroborators []string
}

// DefaultPolicy is the policy pullgate uses unless configured otherwise:
// actions by severity, two different medium indicators block, and a packed
// executable with a wallet address in the same image blocks.
func DefaultPolicy() Policy {
	return Policy{MediumToBlock: 2, PackerCorroborators: []string{CategoryWallet}}
}

// Decision is a Policy's answer for one image.
type Decision struct {
	Blocked  bool
	Blocking []Finding // the findings that refuse the image, sorted; empty when not Blocked
	Warnings []Finding // findings reported but not refusing, sorted
	Reason   string    // one line: why it is blocked ("" when not)
}

// Validate checks the actions and thresholds.
func (p Policy) Validate() error {
	for cat, a := range p.Actions {
		switch a {
		case ActionBlock, ActionWarn, ActionIgnore, ActionDefault:
		default:
			return fmt.Errorf("policy: category %q: action %q is not block, warn or ignore", cat, a)
		}
	}
	if p.MediumToBlock < 0 {
		return fmt.Errorf("policy: medium_to_block %d is negative", p.MediumToBlock)
	}
	return nil
}

// Decide judges the findings of one image: pass the findings of every
// layer and of the config together, so that evidence spread over layers
// adds up. Duplicate findings are harmless.
func (p Policy) Decide(findings []Finding) Decision {
	need := p.MediumToBlock
	if need <= 0 {
		need = 2
	}
	var kept []Finding
	packed := false
	for _, f := range findings {
		if p.Actions[f.Category] == ActionIgnore {
			continue
		}
		kept = append(kept, f)
		if f.Category == CategoryPacker && p.Actions[f.Category] == ActionDefault {
			packed = true
		}
	}

	var d Decision
	var mediums []Finding
	indicators := map[string]bool{}
	packerMedium := false // a packer finding medium of its own, not promoted
	for _, f := range kept {
		switch p.Actions[f.Category] {
		case ActionBlock:
			d.Blocking = append(d.Blocking, f)
			continue
		case ActionWarn:
			d.Warnings = append(d.Warnings, f)
			continue
		}
		sev := f.Severity
		if packed && sev == SeverityLow && (f.Category == CategoryPacker || slices.Contains(p.PackerCorroborators, f.Category)) {
			sev = SeverityMedium
		} else if f.Category == CategoryPacker && sev == SeverityMedium {
			packerMedium = true
		}
		switch sev {
		case SeverityHigh:
			d.Blocking = append(d.Blocking, f)
		case SeverityMedium:
			mediums = append(mediums, f)
			indicators[indicator(f)] = true
		default:
			d.Warnings = append(d.Warnings, f)
		}
	}
	n := len(indicators)
	if indicators[CategoryPacker] && !packerMedium && onlyUnreadArchives(mediums) {
		// A packed tool the unpacker restored counts as an indicator to
		// corroborate evidence of mining. An archive member that could
		// not be read (an encrypted zip in a test suite) is none.
		n--
	}
	if n >= need {
		d.Blocking = append(d.Blocking, mediums...)
	} else {
		d.Warnings = append(d.Warnings, mediums...)
	}
	d.Blocking = dedupe(d.Blocking)
	d.Warnings = dedupe(d.Warnings)
	d.Blocked = len(d.Blocking) > 0
	if d.Blocked {
		d.Reason = reason(d.Blocking)
	}
	return d
}

// onlyUnreadArchives says whether every medium finding but the packer's
// is of the archive category: a member or stream that was not read.
func onlyUnreadArchives(mediums []Finding) bool {
	return !slices.ContainsFunc(mediums, func(f Finding) bool {
		return f.Category != CategoryPacker && f.Category != CategoryArchive
	})
}

// indicator names the piece of evidence a medium finding stands for:
// its rule, except that all packer rules are one indicator (two packed
// tools are not two reasons).
func indicator(f Finding) string {
	if f.Category == CategoryPacker {
		return CategoryPacker
	}
	return f.Rule
}

func dedupe(fs []Finding) []Finding {
	if len(fs) == 0 {
		return nil
	}
	out := slices.Clone(fs)
	sortFindings(out)
	return slices.Compact(out)
}

// reason says in one line why findings block, naming a high finding
// first when there is one.
func reason(blocking []Finding) string {
	f := blocking[0]
	for _, b := range blocking {
		if b.Severity == SeverityHigh {
			f = b
			break
		}
	}
	where := "file " + f.Path
	if p, ok := strings.CutPrefix(f.Path, "config:"); ok {
		where = "image config " + p
	}
	msg := fmt.Sprintf("%s matched %s (%s)", where, f.Rule, f.Description)
	if n := len(blocking) - 1; n > 0 {
		msg += fmt.Sprintf(" and %d more", n)
	}
	return msg
}
