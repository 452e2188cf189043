package scanner

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// includePrefix marks an included file in the ruleset id, so that a file
// both listed and included (a compile error anyway) hashes as two sources.
const includePrefix = "include:"

// includes reads the files that rule sources `include`, for the YARA
// compiler, and records each with the bytes it gave the compiler. The
// compiler reads nothing else, so the ruleset id, hashed over the rule
// sources and these, covers every byte it compiled, and the files the
// reloader watches cover every file it read.
//
// A relative include is resolved against the folder of the file that
// includes it, as the yara command line does, not against the process's
// working directory. The compiler names an including file by the name its
// own includer wrote, so a name is tied to the file it resolved to; when
// one name means two files and one of them includes another file, which
// folder that include is relative to is unknown, and it is refused rather
// than guessed at.
type includes struct {
	top       string            // the source being compiled
	resolved  map[string]string // name as written in an include → first file it named
	ambiguous map[string]string // names that named another file too → that file
	files     []ruleSource      // every included file, as read
	err       error             // the first failure, for the compile error
}

func newIncludes() *includes {
	return &includes{resolved: map[string]string{}, ambiguous: map[string]string{}}
}

// read is the compiler's include callback. It returns nil, which the
// compiler reports as an error, when the file cannot be read.
func (in *includes) read(name, includer, _ string) []byte {
	from := in.top
	if includer != "" {
		var ok bool
		if from, ok = in.resolved[includer]; !ok {
			// Not a name this callback resolved: refuse rather than guess.
			in.fail(fmt.Errorf("include %q from %q: the including file is unknown", name, includer))
			return nil
		}
		if other, ok := in.ambiguous[includer]; ok {
			in.fail(fmt.Errorf("include %q from %q: that name means both %s and %s, so the file it is relative to is unknown: give included files that include others distinct names or absolute paths", name, includer, from, other))
			return nil
		}
	}
	if strings.HasPrefix(from, embeddedPrefix) {
		in.fail(fmt.Errorf("embedded rules %s include %q: embedded rules include nothing", from, name))
		return nil
	}
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(from), name)
	}
	path = filepath.Clean(path)
	if prev, ok := in.resolved[name]; ok && prev != path {
		// Harmless unless the name is later the includer of another file.
		in.ambiguous[name] = path
	}
	b, err := os.ReadFile(path)
	if err != nil {
		in.fail(fmt.Errorf("read file %q included by %s: %w", name, from, err))
		return nil
	}
	if _, ok := in.resolved[name]; !ok {
		in.resolved[name] = path
	}
	in.files = append(in.files, ruleSource{name: includePrefix + path, data: b})
	return b
}

func (in *includes) fail(err error) {
	if in.err == nil {
		in.err = err
	}
}
