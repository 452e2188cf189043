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
// own includer wrote, so a name is tied to the one file it first resolved
// to; the same name meaning another file elsewhere is refused rather than
// guessed at.
type includes struct {
	top      string            // the source being compiled
	resolved map[string]string // name as written in an include → file read
	files    []ruleSource      // every included file, as read
	err      error             // the first failure, for the compile error
}

func newIncludes() *includes { return &includes{resolved: map[string]string{}} }

// read is the compiler's include callback. It returns nil, which the
// compiler reports as an error, when the file cannot be read.
func (in *includes) read(name, includer, _ string) []byte {
	from := in.top
	if includer != "" {
		from = in.resolved[includer]
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
		in.fail(fmt.Errorf("include %q in %s names %s, and elsewhere %s: give included files distinct names or absolute paths", name, from, path, prev))
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		in.fail(fmt.Errorf("read file %q included by %s: %w", name, from, err))
		return nil
	}
	in.resolved[name] = path
	in.files = append(in.files, ruleSource{name: includePrefix + path, data: b})
	return b
}

func (in *includes) fail(err error) {
	if in.err == nil {
		in.err = err
	}
}
