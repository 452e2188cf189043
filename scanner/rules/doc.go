// Package rules holds pullgate's default YARA ruleset, the *.yar files
// beside this one, which package scanner embeds and compiles, in name
// order, into one namespace with the operator's rule files. There is no
// Go code here; the files are data.
//
// Each public rule carries meta category, severity and description, and
// is tested against synthetic samples (internal/samples) and ordinary
// files. A rule file must never hold an indicator as a plain string:
// indicators are written with \x escapes so the pullgate binary, which
// embeds these files, does not match its own rules. Rules must not depend
// on string counts or on matches after the first: scans run in YARA's
// fast mode.
package rules
