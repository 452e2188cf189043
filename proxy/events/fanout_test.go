package events

import (
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/storage"
)

// Every sink gets the same event, once, stamped and bounded.
func TestFanoutStampsAndBoundsOnce(t *testing.T) {
	var got [3][]Event
	var f Fanout
	for i := range got {
		f = append(f, SinkFunc(func(ev Event) { got[i] = append(got[i], ev) }))
	}
	f.Emit(Event{Decision: verdict.Allowed, UserAgent: strings.Repeat("a", 10*storage.MaxFieldBytes)})
	for i, evs := range got {
		if len(evs) != 1 {
			t.Fatalf("sink %d got %d events", i, len(evs))
		}
		ev := evs[0]
		if ev.Time.IsZero() || len(ev.UserAgent) > storage.MaxFieldBytes || ev.Time != got[0][0].Time {
			t.Errorf("sink %d got time %v, user agent of %d bytes", i, ev.Time, len(ev.UserAgent))
		}
	}
}
