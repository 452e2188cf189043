package scanner

import (
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hillu/go-yara/v4"
)

//go:embed rules/*.yar
var defaultRules embed.FS

// ruleNamespace is the one YARA namespace every source is compiled into,
// so operator rules can use the default ruleset's private helpers (such as
// ScriptLike) and a duplicate rule name is a compile error rather than an
// ambiguous finding.
const ruleNamespace = "pullgate"

// embeddedPrefix names the embedded rule files in errors and the id.
const embeddedPrefix = "embedded:"

// Externals every rule may use. Their defaults are declared in the
// compiler; each worker redefines them before every scan.
const (
	extFilepath   = "filepath"   // "/usr/bin/x", or "config:Cmd"
	extFilename   = "filename"   // "x"
	extExtension  = "extension"  // "sh": lower case, no dot
	extExecutable = "executable" // ELF/Mach-O/PE magic or an exec mode bit
	extContext    = "context"    // "layer" or "config"
)

const (
	contextLayer  = "layer"
	contextConfig = "config"
)

// ruleSource is one rule file: the name used in errors and in the ruleset
// id, and its text.
type ruleSource struct {
	name string
	data []byte
}

// ruleMeta is what a Finding takes from the rule that matched.
type ruleMeta struct {
	category    string
	severity    string
	description string
}

// Meta defaults for operator rules that leave them out. A rule an operator
// adds is meant to refuse images unless it says otherwise.
const (
	defaultCategory = "custom"
	defaultSeverity = SeverityHigh
)

// loadSources returns the embedded rules followed by the operator's files,
// each group sorted by name, so compilation and the ruleset id are
// deterministic.
func loadSources(extra []string) ([]ruleSource, error) {
	var srcs []ruleSource
	err := fs.WalkDir(defaultRules, "rules", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := defaultRules.ReadFile(p)
		if err != nil {
			return err
		}
		srcs = append(srcs, ruleSource{name: embeddedPrefix + p, data: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read embedded rules: %w", err)
	}
	var ops []ruleSource
	for _, root := range extra {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			ext := strings.ToLower(filepath.Ext(p))
			if p != root && ext != ".yar" && ext != ".yara" {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			ops = append(ops, ruleSource{name: p, data: b})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read rules from %s: %w", root, err)
		}
	}
	slices.SortFunc(ops, func(a, b ruleSource) int { return strings.Compare(a.name, b.name) })
	return append(srcs, ops...), nil
}

// compiled is what compileRules makes of the sources.
type compiled struct {
	rules    *yara.Rules
	included []ruleSource // the files the sources include, as given to the compiler
	warnings []string     // "file:line: text"
}

// compileRules compiles every source into one namespace, reading the files
// they include itself (see includes). Errors name the file and line.
// Warnings (such as a string that slows scanning) are returned for tests
// and operators to see.
func compileRules(srcs []ruleSource) (compiled, error) {
	c, err := yara.NewCompiler()
	if err != nil {
		return compiled{}, fmt.Errorf("create yara compiler: %w", err)
	}
	defer c.Destroy()
	if err := defineExternals(c); err != nil {
		return compiled{}, err
	}
	inc := newIncludes()
	c.SetIncludeCallback(inc.read)
	// Destroy frees the compiler but not go-yara's handle to the callback
	// (and through it every included file's bytes); this lets it go. It
	// runs before the deferred Destroy.
	defer c.DisableIncludes()
	var warnings []string
	for _, src := range srcs {
		inc.top = src.name
		if err := c.AddString(string(src.data), ruleNamespace); err != nil {
			if inc.err != nil {
				return compiled{}, fmt.Errorf("compile rules %s: %w", src.name, inc.err)
			}
			return compiled{}, compileError(src.name, c.Errors, err)
		}
		// The compiler keeps every warning so far; the new ones are this
		// source's.
		for _, w := range c.Warnings[len(warnings):] {
			warnings = append(warnings, fmt.Sprintf("%s:%d: %s", warningFile(src.name, w.Filename), w.Line, w.Text))
		}
	}
	rules, err := c.GetRules()
	if err != nil {
		return compiled{}, fmt.Errorf("link yara rules: %w", err)
	}
	return compiled{rules: rules, included: inc.files, warnings: warnings}, nil
}

// defineExternals declares every external with its default value.
func defineExternals(c *yara.Compiler) error {
	defaults := []struct {
		name  string
		value any
	}{
		{extFilepath, ""},
		{extFilename, ""},
		{extExtension, ""},
		{extExecutable, false},
		{extContext, contextLayer},
	}
	for _, d := range defaults {
		if err := c.DefineVariable(d.name, d.value); err != nil {
			return fmt.Errorf("define yara external %s: %w", d.name, err)
		}
	}
	return nil
}

// warningFile is the file a compiler message is about: the source, or the
// included file (as its include names it) the message comes from.
func warningFile(src, included string) string {
	if included != "" {
		return included
	}
	return src
}

// compileError reports the compiler's messages for one source as
// "file:line: text".
func compileError(name string, msgs []yara.CompilerMessage, err error) error {
	if len(msgs) == 0 {
		return fmt.Errorf("compile rules %s: %w", name, err)
	}
	lines := make([]string, len(msgs))
	for i, m := range msgs {
		lines[i] = fmt.Sprintf("%s:%d: %s", warningFile(name, m.Filename), m.Line, m.Text)
	}
	return fmt.Errorf("compile rules: %s", strings.Join(lines, "; "))
}

// ruleMetas reads category, severity and description of every rule,
// keyed by rule identifier, and counts the public rules.
func ruleMetas(rules *yara.Rules) (map[string]ruleMeta, int) {
	all := rules.GetRules()
	metas := make(map[string]ruleMeta, len(all))
	public := 0
	for _, r := range all {
		if !r.IsPrivate() {
			public++
		}
		m := ruleMeta{category: defaultCategory, severity: defaultSeverity, description: r.Identifier()}
		for _, kv := range r.Metas() {
			s, ok := kv.Value.(string)
			if !ok || s == "" {
				continue
			}
			switch kv.Identifier {
			case "category":
				m.category = s
			case "severity":
				m.severity = strings.ToLower(s)
			case "description":
				m.description = s
			}
		}
		metas[r.Identifier()] = m
	}
	return metas, public
}

// rulesetID hashes everything that decides a verdict: the scanner version,
// the YARA engine version, every rule source and the limits.
func rulesetID(srcs []ruleSource, l Limits, knownBad []string) string {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(Version))
	field([]byte(yaraVersion))
	sorted := slices.Clone(srcs)
	slices.SortFunc(sorted, func(a, b ruleSource) int { return strings.Compare(a.name, b.name) })
	for _, s := range sorted {
		field([]byte(s.name))
		field(s.data)
	}
	field(fmt.Appendf(nil, "%d/%d/%d/%d/%d/%d",
		l.MaxLayerBytes, l.MaxFiles, l.MaxFileBytes, l.Window, int64(l.LayerTimeout), windowOverlap))
	if len(knownBad) > 0 {
		field([]byte("known-bad"))
		field([]byte(strings.Join(knownBad, "\n")))
	}
	return hex.EncodeToString(h.Sum(nil))
}
