package verdict

import (
	"encoding/json"
	"testing"
)

func TestOutcomeRoundTrips(t *testing.T) {
	seen := map[string]bool{}
	for _, o := range Outcomes() {
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		var back Outcome
		if err := json.Unmarshal(b, &back); err != nil || back != o {
			t.Fatalf("%v: %s read back as %v (%v)", o, b, back, err)
		}
		if seen[o.String()] || o.String() == "" {
			t.Fatalf("%d: name %q empty or repeated", o, o)
		}
		seen[o.String()] = true
	}
	if len(seen) != 9 {
		t.Fatalf("%d outcomes, want 9", len(seen))
	}
}

func TestOutcomeReadsTheOlderSpelling(t *testing.T) {
	var o Outcome
	if err := json.Unmarshal([]byte(`"retroactive_block"`), &o); err != nil || o != RetroactiveBlock {
		t.Fatalf("got %v, %v", o, err)
	}
	if err := json.Unmarshal([]byte(`"maybe"`), &o); err == nil {
		t.Fatal("an unknown word was read as an outcome")
	}
}

func TestNoOutcomeIsOmitted(t *testing.T) {
	b, _ := json.Marshal(struct {
		D Outcome `json:"decision,omitempty"`
	}{})
	if string(b) != "{}" {
		t.Fatalf("got %s", b)
	}
}
