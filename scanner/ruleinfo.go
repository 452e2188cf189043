package scanner

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/hillu/go-yara/v4"
)

// RuleInfo describes one compiled public rule, for listings such as
// `pullgate rules check`.
type RuleInfo struct {
	Name        string `json:"name"`
	Category    string `json:"category"`
	Severity    string `json:"severity"`
	Description string `json:"description"`
	Source      string `json:"source"` // "embedded:rules/miners.yar:10" or "/etc/pullgate/rules/x.yar:3"
}

// Rules lists the public rules compiled into the scanner, in source order.
func (s *Scanner) Rules() []RuleInfo { return append([]RuleInfo(nil), s.peek().infos...) }

var ruleDecl = regexp.MustCompile(`(?m)^\s*(?:(?:private|global)\s+)*rule\s+([A-Za-z_][A-Za-z0-9_]*)`)

// ruleInfos lists the public rules with their meta and where they are
// defined.
func ruleInfos(rules *yara.Rules, metas map[string]ruleMeta, srcs []ruleSource) []RuleInfo {
	where := map[string]string{}
	var order []string
	for _, src := range srcs {
		text := string(src.data)
		for _, m := range ruleDecl.FindAllStringSubmatchIndex(text, -1) {
			name := text[m[2]:m[3]]
			line := 1 + strings.Count(text[:m[2]], "\n")
			if _, dup := where[name]; !dup {
				where[name] = src.name + ":" + strconv.Itoa(line)
				order = append(order, name)
			}
		}
	}
	public := map[string]bool{}
	for _, r := range rules.GetRules() {
		if !r.IsPrivate() {
			public[r.Identifier()] = true
		}
	}
	var out []RuleInfo
	for _, name := range order {
		if !public[name] {
			continue
		}
		m := metas[name]
		out = append(out, RuleInfo{Name: name, Category: m.category, Severity: m.severity, Description: m.description, Source: where[name]})
		delete(public, name)
	}
	// Rules the declaration pattern missed (unusual formatting) still show.
	for _, r := range rules.GetRules() {
		if name := r.Identifier(); public[name] {
			m := metas[name]
			out = append(out, RuleInfo{Name: name, Category: m.category, Severity: m.severity, Description: m.description})
		}
	}
	return out
}

// stringDef matches one string definition in a rule source:
// $name = "text" modifiers, $name = /regex/ modifiers, $name = { hex }.
var stringDef = regexp.MustCompile(`^\s*(\$[A-Za-z0-9_]*)\s*=\s*("(?:[^"\\]|\\.)*"|/(?:[^/\\\n]|\\.)*/[is]*|\{[^}]*\})`)

// minAtom is the shortest fixed run of bytes a string should have. YARA
// looks for strings by short fixed "atoms" (up to 4 bytes); a string
// whose longest fixed run is shorter is checked at very many offsets.
const minAtom = 4

// lintSources warns about strings likely to slow scanning down: those
// whose longest fixed run of bytes is shorter than minAtom. YARA itself
// warns only about the worst ones. Warnings are "file:line: text".
func lintSources(srcs []ruleSource) []string {
	var out []string
	for _, src := range srcs {
		for i, line := range strings.Split(string(src.data), "\n") {
			m := stringDef.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			if n := fixedRun(m[2]); n < minAtom {
				out = append(out, fmt.Sprintf("%s:%d: string %s has no fixed run of %d bytes (longest %d): it may slow down scanning", src.name, i+1, m[1], minAtom, n))
			}
		}
	}
	return out
}

// fixedRun estimates the longest run of fixed bytes in a text string,
// regex or hex string as written in a rule.
func fixedRun(def string) int {
	switch def[0] {
	case '"':
		s, err := strconv.Unquote(def)
		if err != nil {
			return len(def) - 2
		}
		return len(s)
	case '{':
		best, run := 0, 0
		for _, tok := range strings.Fields(strings.Trim(def, "{}")) {
			if len(tok) == 2 && !strings.ContainsAny(tok, "?") && isHex(tok) {
				run++
				best = max(best, run)
				continue
			}
			run = 0
		}
		return best
	}
	// A regex: count literal characters between metacharacters, treating
	// an escaped character as one literal, and restarting the run at any
	// class, group, alternation or quantifier.
	body := def[1:strings.LastIndexByte(def, '/')]
	best, run := 0, 0
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c == '\\' && i+1 < len(body):
			next := body[i+1]
			i++
			if strings.IndexByte("sSdDwWbB", next) >= 0 {
				run = 0
				continue
			}
			if next == 'x' && i+2 < len(body) {
				i += 2
			}
		case c == '[':
			run = 0
			for i < len(body) && body[i] != ']' {
				if body[i] == '\\' {
					i++
				}
				i++
			}
			continue
		case strings.IndexByte("()|.^$", c) >= 0:
			run = 0
			continue
		case strings.IndexByte("*+?{", c) >= 0:
			// The quantified character was not fixed after all.
			if run > 0 && run == best {
				best--
			}
			if c == '{' {
				for i < len(body) && body[i] != '}' {
					i++
				}
			}
			run = 0
			continue
		}
		// Inside an alternation a run is fixed only in its branch;
		// counting it anyway errs towards not warning.
		run++
		best = max(best, run)
	}
	return best
}

func isHex(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}
