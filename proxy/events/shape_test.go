package events

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
)

// jsonShape is the field names of a JSON object and the JSON kind of each
// ("string", "number", "array", "object", "bool"); for an array of
// objects, the shape of its first element under "name[]".
func jsonShape(t *testing.T, v any) map[string]string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			switch v := v.(type) {
			case string:
				out[prefix+k] = "string"
			case float64:
				out[prefix+k] = "number"
			case bool:
				out[prefix+k] = "bool"
			case map[string]any:
				out[prefix+k] = "object"
			case []any:
				out[prefix+k] = "array"
				if len(v) > 0 {
					if o, ok := v[0].(map[string]any); ok {
						walk(prefix+k+"[].", o)
					}
				}
			}
		}
	}
	walk("", m)
	return out
}

// fullEvent has every field set, so that no omitempty hides one.
func fullEvent(d verdict.Outcome) Event {
	return Event{
		Time: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC), Client: "10.0.0.1", UserAgent: "docker/27.0",
		Image: "docker.io/someone/miner:1", Digest: digest.FromString("image"), Decision: d,
		Findings: []verdict.Finding{{Rule: "MinerXMRig", Category: "miner", Severity: "high", Description: "XMRig",
			Path: "/opt/x.tgz!xmrig", File: "/opt/x.tgz", Layer: digest.FromString("layer")}},
		Reason: "pullgate: blocked", Latency: 1500 * time.Millisecond,
	}
}

var findingShape = map[string]string{
	"findings": "array", "findings[].rule": "string", "findings[].category": "string", "findings[].severity": "string",
	"findings[].description": "string", "findings[].path": "string", "findings[].file": "string", "findings[].layer": "string",
}

func with(base map[string]string, more map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

// The webhook body and the audit record are what other programs read:
// their field names and JSON types are pinned here, and both are made from
// the one Event.
func TestAlertAndAuditRecordJSONShape(t *testing.T) {
	ev := fullEvent(verdict.Blocked)
	alert, ok := alertOf(ev)
	if !ok {
		t.Fatal("a block sends no alert")
	}
	alert.ID, alert.Version = "0123abcd", "v1.2.3"
	wantAlert := with(findingShape, map[string]string{
		"id": "string", "type": "string", "time": "string", "image": "string", "digest": "string",
		"client": "string", "user_agent": "string", "reason": "string", "pullgate_version": "string",
	})
	if got := jsonShape(t, alert); !reflect.DeepEqual(got, wantAlert) {
		t.Errorf("alert body shape:\n got %v\nwant %v", got, wantAlert)
	}
	wantAudit := with(findingShape, map[string]string{
		"time": "string", "kind": "string", "client": "string", "user_agent": "string", "image": "string",
		"digest": "string", "decision": "string", "reason": "string", "latency": "number",
	})
	rec := AuditRecord(ev)
	if got := jsonShape(t, rec); !reflect.DeepEqual(got, wantAudit) {
		t.Errorf("audit record shape:\n got %v\nwant %v", got, wantAudit)
	}

	// The words and values receivers read.
	body, _ := json.Marshal(alert)
	for _, want := range []string{`"type":"block"`, `"time":"2025-03-04T05:06:07Z"`, `"pullgate_version":"v1.2.3"`, `"path":"/opt/x.tgz!xmrig"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("alert body lacks %s: %s", want, body)
		}
	}
	rb, _ := json.Marshal(rec)
	for _, want := range []string{`"kind":"pull"`, `"decision":"blocked"`, `"latency":1500000000`} {
		if !strings.Contains(string(rb), want) {
			t.Errorf("audit record lacks %s: %s", want, rb)
		}
	}
	if back := FromAudit(rec); !reflect.DeepEqual(back, ev) {
		t.Errorf("event -> audit record -> event:\n got %+v\nwant %+v", back, ev)
	}
}

// Only a block and a retroactive block send an alert, each under its own
// type; a retroactive block is audited as its own kind.
func TestAlertOnAndAuditKind(t *testing.T) {
	for _, o := range verdict.Outcomes() {
		alert, ok := alertOf(fullEvent(o))
		var wantType string
		switch o {
		case verdict.Blocked:
			wantType = "block"
		case verdict.RetroactiveBlock:
			wantType = "retroactive_block"
		}
		if ok != (wantType != "") || alert.Type.String() != wantType {
			t.Errorf("%v: alert %v of type %q, want type %q", o, ok, alert.Type, wantType)
		}
		if ok {
			var back AlertBody
			b, _ := json.Marshal(alert)
			if err := json.Unmarshal(b, &back); err != nil || back.Type != alert.Type {
				t.Errorf("%v: the alert type does not read back: %v, %v", o, back.Type, err)
			}
		}
		wantKind := "pull"
		if o == verdict.RetroactiveBlock {
			wantKind = "retroactive"
		}
		if k := AuditRecord(fullEvent(o)).Kind; k != wantKind {
			t.Errorf("%v: audit kind %q, want %q", o, k, wantKind)
		}
	}
}
