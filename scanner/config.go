package scanner

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// configRawPath is the Path of findings in the config JSON as a whole,
// reported only for rules that matched no individual field.
const configRawPath = "config:json"

// imageConfig holds the parts of an OCI/Docker image config that say
// what a container runs.
type imageConfig struct {
	Config          containerConfig `json:"config"`
	ContainerConfig containerConfig `json:"container_config"` // Docker v1 configs
	History         []struct {
		CreatedBy string `json:"created_by"`
	} `json:"history"`
}

type containerConfig struct {
	Entrypoint stringList        `json:"Entrypoint"`
	Cmd        stringList        `json:"Cmd"`
	Env        []string          `json:"Env"`
	Labels     map[string]string `json:"Labels"`
}

// stringList accepts a JSON array of strings or a single string, as
// Docker has written both for Entrypoint and Cmd.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*l = stringList{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return err
	}
	*l = ss
	return nil
}

// ScanConfig scans an image config JSON blob: the raw bytes, and
// Entrypoint, Cmd, Env, Labels and each history[].created_by as text with
// Path "config:<field>", and every key and string of the whole config,
// unescaped, as "config:strings". A config that is not valid JSON is scanned raw
// and reported as ErrCorrupt.
func (s *Scanner) ScanConfig(ctx context.Context, config []byte, prio Prioritizer) (Result, error) {
	start := time.Now()
	if int64(len(config)) > s.limits.MaxFileBytes {
		return Result{RulesetID: s.RulesetID()}, limitError("image config is %d bytes, more than MaxFileBytes %d", len(config), s.limits.MaxFileBytes)
	}
	st, cancel, err := s.newScan(ctx, contextConfig, prio)
	if err != nil {
		return Result{RulesetID: s.RulesetID()}, err
	}
	defer cancel()

	items := rawWindows(config, int(s.limits.Window))
	var cfg imageConfig
	parseErr := json.Unmarshal(config, &cfg)
	if parseErr == nil {
		items = append(items, cfg.Config.items("")...)
		items = append(items, cfg.ContainerConfig.items("container_config.")...)
		for i, h := range cfg.History {
			items = appendText(items, fmt.Sprintf("history[%d]", i), h.CreatedBy)
		}
		// Every other field a client acts on (Healthcheck, which the
		// Docker Engine runs in every container of the image, OnBuild,
		// Shell, ...) as clients read it: with its escapes undone.
		var all any
		if json.Unmarshal(config, &all) == nil {
			var b strings.Builder
			appendStrings(&b, all)
			items = appendText(items, strings.TrimPrefix(configStringsPath, "config:"), b.String())
		}
	}

	if err = st.acquire(); err == nil {
		err = s.submit(&job{scan: st, items: items})
	}
	// The items point into config: wait for the worker even if ctx ends,
	// so config is never read after we return. Workers skip the items of
	// a cancelled scan, so this is quick.
	st.drain()
	if err == nil {
		err = st.firstErr()
	}
	if cerr := s.ctxErr(ctx, st); cerr != nil {
		err = cerr
	}
	res := Result{Findings: configFindings(st.result()), Files: 1, Bytes: int64(len(config)), Duration: time.Since(start), RulesetID: st.rs.id}
	if err != nil {
		return res, fmt.Errorf("scan image config: %w", err)
	}
	if parseErr != nil {
		return res, corruptError("parse image config", parseErr)
	}
	return res, nil
}

func (c containerConfig) items(prefix string) []item {
	var items []item
	items = appendText(items, prefix+"Entrypoint", strings.Join(c.Entrypoint, " "))
	items = appendText(items, prefix+"Cmd", strings.Join(c.Cmd, " "))
	if len(c.Entrypoint) > 0 && len(c.Cmd) > 0 {
		// What the container runs is both together; an indicator may be
		// split between them (the binary and pool in one, the wallet in
		// the other).
		items = appendText(items, prefix+"Entrypoint+Cmd", strings.Join(append(slices.Clone([]string(c.Entrypoint)), c.Cmd...), " "))
	}
	items = appendText(items, prefix+"Env", strings.Join(c.Env, "\n"))
	if len(c.Labels) > 0 {
		labels := make([]string, 0, len(c.Labels))
		for k, v := range c.Labels {
			labels = append(labels, k+"="+v)
		}
		slices.Sort(labels)
		items = appendText(items, prefix+"Labels", strings.Join(labels, "\n"))
	}
	return items
}

func appendText(items []item, field, text string) []item {
	if text == "" {
		return items
	}
	return append(items, item{path: "config:" + field, name: field, data: []byte(text)})
}

// rawWindows splits in-memory content into overlapping windows without
// copying.
func rawWindows(b []byte, window int) []item {
	var items []item
	for off := 0; ; off += window - windowOverlap {
		end := min(off+window, len(b))
		items = append(items, item{path: configRawPath, name: "json", ext: "json", data: b[off:end]})
		if end == len(b) {
			return items
		}
	}
}

// configStringsPath is the Path of findings in every string of the
// config (see ScanConfig), reported only for rules that matched no named
// field.
const configStringsPath = "config:strings"

// configFindings keeps, for each rule, the findings that say best where
// its indicator is: those in a named field; else in the config's strings;
// else in its raw JSON.
func configFindings(fs []Finding) []Finding {
	rank := func(p string) int {
		switch p {
		case configRawPath:
			return 2
		case configStringsPath:
			return 1
		}
		return 0
	}
	best := map[string]int{}
	for _, f := range fs {
		if r, ok := best[f.Rule]; !ok || rank(f.Path) < r {
			best[f.Rule] = rank(f.Path)
		}
	}
	out := fs[:0]
	for _, f := range fs {
		if rank(f.Path) == best[f.Rule] {
			out = append(out, f)
		}
	}
	return out
}

// appendStrings writes every key and string value of the JSON value v to
// b, a line each, objects' keys in order.
func appendStrings(b *strings.Builder, v any) {
	switch v := v.(type) {
	case string:
		b.WriteString(v)
		b.WriteByte('\n')
	case []any:
		for _, e := range v {
			appendStrings(b, e)
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b.WriteString(k)
			b.WriteByte('\n')
			appendStrings(b, v[k])
		}
	}
}
