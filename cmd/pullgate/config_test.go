package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The example config documents every option with its default: loading it
// must give exactly the built-in defaults, so the two can never drift.
func TestExampleConfigIsTheDefaults(t *testing.T) {
	c := defaultConfig()
	if err := c.loadFile(filepath.Join("..", "..", "configs", "pullgate.yaml")); err != nil {
		t.Fatal(err)
	}
	if want := defaultConfig(); !reflect.DeepEqual(c, want) {
		t.Fatalf("configs/pullgate.yaml differs from the defaults:\n got %+v\nwant %+v", c, want)
	}
}

// Loading the example gives the defaults also when a key is missing from it,
// so that test alone lets an option vanish from the documentation. Every
// option of the config struct must appear as a key at its path in the
// example.
//
// Commented-out examples do not count, with one exception: a map of structs
// whose default is empty (policy) cannot hold an entry without changing the
// defaults, so there the element's keys must appear in the comment above
// the map's key, which is where the example shows them.
func TestExampleConfigNamesEveryOption(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "configs", "pullgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("parse configs/pullgate.yaml: %v", err)
	}
	if len(doc.Content) != 1 {
		t.Fatal("configs/pullgate.yaml is not one YAML document")
	}
	for _, miss := range missingOptions(reflect.TypeFor[Config](), doc.Content[0], "") {
		t.Errorf("configs/pullgate.yaml does not name the option %s", miss)
	}
}

// The check above, on examples that leave options out.
func TestMissingOptionsFindsWhatIsLeftOut(t *testing.T) {
	type inner struct {
		A string `yaml:"a"`
		B int    `yaml:"b"`
	}
	type cfg struct {
		Top   string           `yaml:"top"`
		In    inner            `yaml:"in"`
		Many  map[string]inner `yaml:"many"`
		None  map[string]inner `yaml:"none"`
		List  []inner          `yaml:"list"`
		Plain map[string]int   `yaml:"plain"`
		Skip  string           `yaml:"-"`
	}
	for _, c := range []struct {
		name, example string
		want          []string
	}{
		{"complete", "top: x\nin: {a: x, b: 1}\nmany: {one: {a: x, b: 1}}\n# a: b:\nnone: {}\nlist: [{a: x, b: 1}]\nplain: {}\n", nil},
		{"top-level keys", "in: {a: x, b: 1}\nmany: {}\nnone: {}\nlist: []\n", []string{"top", "many.*.a", "many.*.b", "none.*.a", "none.*.b", "list[].a", "list[].b", "plain"}},
		{"nested keys", "top: x\nin:\n  a: x\n  # b: 1\nmany: {one: {a: x}}\n\n# a, b:\nnone: {}\nlist: [{b: 1}]\nplain: {}\n", []string{"in.b", "many.one.b", "none.*.a", "list[0].a"}},
		{"not a mapping", "top: x\nin: []\nmany: {}\n# a: b:\nnone: {}\nlist: [{a: x, b: 1}]\nplain: {}\n", []string{"in.a", "in.b", "many.*.a", "many.*.b"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(c.example), &doc); err != nil {
				t.Fatal(err)
			}
			got := missingOptions(reflect.TypeFor[cfg](), doc.Content[0], "")
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("missing %q, want %q", got, c.want)
			}
		})
	}
}

// missingOptions lists the yaml paths of the options of struct type typ
// that node (a mapping, or nil) does not name, with the options inside
// those it names.
func missingOptions(typ reflect.Type, node *yaml.Node, path string) []string {
	var missing []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		key, flags, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case !f.IsExported() || key == "-":
			continue
		case flags == "inline":
			missing = append(missing, missingOptions(f.Type, node, path)...)
			continue
		case key == "":
			key = strings.ToLower(f.Name) // as yaml.v3 names an untagged field
		}
		keyNode, value := mappingEntry(node, key)
		if value == nil {
			missing = append(missing, path+key)
			continue
		}
		missing = append(missing, missingInValue(f.Type, value, path+key, keyNode.HeadComment)...)
	}
	return missing
}

// missingInValue lists what the value of one option, of type typ, leaves
// out. comment is the comment above the option's key: an empty map or list
// of structs must name its element's keys there.
func missingInValue(typ reflect.Type, value *yaml.Node, path, comment string) []string {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if typ.Kind() == reflect.Struct {
		if value.Kind != yaml.MappingNode {
			value = nil
		}
		return missingOptions(typ, value, path+".")
	}
	if typ.Kind() != reflect.Map && typ.Kind() != reflect.Slice {
		return nil
	}
	elem := typ.Elem()
	for elem.Kind() == reflect.Pointer {
		elem = elem.Elem()
	}
	if elem.Kind() != reflect.Struct {
		return nil // a map or list of scalars
	}
	names, entries := collectionEntries(typ, value, path)
	if len(entries) == 0 {
		star := path + ".*"
		if typ.Kind() == reflect.Slice {
			star = path + "[]"
		}
		var missing []string
		for _, key := range missingOptions(elem, nil, "") {
			if !strings.Contains(comment, key+":") {
				missing = append(missing, star+"."+key)
			}
		}
		return missing
	}
	var missing []string
	for i, e := range entries {
		missing = append(missing, missingInValue(elem, e, names[i], "")...)
	}
	return missing
}

// collectionEntries returns the entries of a map (mapping node) or list
// (sequence node) value with their paths.
func collectionEntries(typ reflect.Type, value *yaml.Node, path string) (names []string, entries []*yaml.Node) {
	switch {
	case typ.Kind() == reflect.Slice && value.Kind == yaml.SequenceNode:
		for i, e := range value.Content {
			names, entries = append(names, path+"["+strconv.Itoa(i)+"]"), append(entries, e)
		}
	case typ.Kind() == reflect.Map && value.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(value.Content); i += 2 {
			names, entries = append(names, path+"."+value.Content[i].Value), append(entries, value.Content[i+1])
		}
	}
	return names, entries
}

// mappingEntry returns the key and value nodes of key in a mapping node;
// nil for a nil node, a node that is not a mapping, or an absent key.
func mappingEntry(node *yaml.Node, key string) (keyNode, value *yaml.Node) {
	if node == nil || node.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		if node.Content[i].Value == key {
			return node.Content[i], node.Content[i+1]
		}
	}
	return nil, nil
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	writeFile(t, file, "listen: \":6000\"\nworkers: 3\ngate:\n  hold: 5s\nupstreams:\n  ghcr.io:\n    url: https://ghcr.io\n    username: bot\n")

	env := map[string]string{
		"PULLGATE_CONFIG":   file,
		"PULLGATE_LISTEN":   ":7000",
		"PULLGATE_UPSTREAM": "ghcr.io=http://127.0.0.1:9999",
		"PULLGATE_RULES":    "/a.yar:/b",
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f serveFlags
	f.register(fs)
	if err := fs.Parse([]string{"--listen", "127.0.0.1:8000", "--rules", "/c.yar", "--upstream", "docker.io=http://127.0.0.1:5001"}); err != nil {
		t.Fatal(err)
	}
	c, err := f.resolve(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8000" {
		t.Errorf("flag should win: listen = %q", c.Listen)
	}
	if c.Workers != 3 || time.Duration(c.Gate.Hold) != 5*time.Second {
		t.Errorf("file values lost: workers=%d hold=%v", c.Workers, time.Duration(c.Gate.Hold))
	}
	if got := c.Upstreams["ghcr.io"]; got.URL != "http://127.0.0.1:9999" || got.Username != "bot" {
		t.Errorf("env upstream should replace the URL and keep the file's credentials: %+v", got)
	}
	if got := c.Upstreams["docker.io"].URL; got != "http://127.0.0.1:5001" {
		t.Errorf("flag upstream: %q", got)
	}
	if want := []string{"/a.yar", "/b", "/c.yar"}; !reflect.DeepEqual(c.Rules, want) {
		t.Errorf("rules = %v, want %v", c.Rules, want)
	}
}

func TestConfigRejectsUnknownKeysAndBadValues(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"typo":     "listn: \":5000\"\n",
		"duration": "gate:\n  hold: soon\n",
		"no url":   "upstreams:\n  quay.io: {}\n",
		"mode":     "gate:\n  mode: fast\n",
		"agent":    "gate:\n  agent_modes: {\"skopeo/\": later}\n",
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, name+".yaml")
			writeFile(t, file, body)
			var f serveFlags
			f.config = file
			if _, err := f.resolve(func(string) string { return "" }); err == nil {
				t.Fatal("accepted a bad config")
			}
		})
	}
	var f serveFlags
	f.upstreams = listFlag{"docker.io"}
	if _, err := f.resolve(func(string) string { return "" }); err == nil {
		t.Fatal("accepted --upstream without =URL")
	}
}
