package scanner

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A change to a rule file on disk (edited, added, removed) changes the
// fingerprint the reloader polls; an untouched tree does not.
func TestRulesFingerprintSeesChangesOnDisk(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "site.yar")
	writeFile(t, file, "rule A { condition: false }\n")
	fp := func() string { return Fingerprint([]string{dir}) }
	first := fp()
	if fp() != first {
		t.Fatal("the fingerprint of an untouched tree changed")
	}

	writeFile(t, file, "rule A { condition: true }\n")
	// Same size, so only the time can tell; make sure it moves.
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(file, later, later); err != nil {
		t.Fatal(err)
	}
	edited := fp()
	if edited == first {
		t.Fatal("an edited rule file was not noticed")
	}

	writeFile(t, filepath.Join(dir, "more.yar"), "rule B { condition: false }\n")
	added := fp()
	if added == edited {
		t.Fatal("a new rule file was not noticed")
	}
	if err := os.Remove(filepath.Join(dir, "more.yar")); err != nil {
		t.Fatal(err)
	}
	if fp() == added {
		t.Fatal("a removed rule file was not noticed")
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
