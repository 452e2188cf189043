package admin

import (
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/storage"
)

// The blocked list keeps at most maxBlocked digests (the ones seen last)
// and maxBlockedClients addresses each, however many refusals come in.
func TestLiveBlockedListIsBounded(t *testing.T) {
	l := NewLive()
	start := time.Now()
	for i := range 3 * maxBlocked {
		l.add(events.Event{Time: start.Add(time.Duration(i) * time.Millisecond), Client: fmt.Sprintf("10.0.%d.%d", i>>8, i&255),
			Digest: digest.FromString(fmt.Sprint(i)), Decision: verdict.Policy, Image: "docker.io/x/y"})
	}
	if n := len(l.BlockedImages()); n != maxBlocked {
		t.Fatalf("%d blocked digests kept, want %d", n, maxBlocked)
	}
	if _, ok := l.blocked[digest.FromString(fmt.Sprint(3*maxBlocked-1))]; !ok {
		t.Fatal("the newest refusal was dropped instead of the oldest")
	}
	d := digest.FromString("one")
	for i := range 1000 {
		l.add(events.Event{Time: time.Now(), Client: fmt.Sprintf("10.1.%d.%d", i>>8, i&255), Digest: d, Decision: verdict.Blocked})
	}
	b := l.blocked[d]
	if len(b.Clients) > maxBlockedClients+1 || b.Clients[otherClients] != 1000-maxBlockedClients || b.Attempts != 1000 {
		t.Fatalf("%d client entries, %d under %q, %d attempts", len(b.Clients), b.Clients[otherClients], otherClients, b.Attempts)
	}
}

// A decision shared by another replica while this one reloads the audit
// log is kept once, whether or not the log already had it.
func TestLiveKeepsReloadedAndSharedDecisionOnce(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	logged := events.Event{Time: at, Client: "10.0.0.1", Image: "docker.io/a/b:1", Digest: digest.FromString("logged"), Decision: verdict.Blocked}
	notLogged := events.Event{Time: at.Add(time.Second), Client: "10.0.0.1", Image: "docker.io/a/c:1", Digest: digest.FromString("new"), Decision: verdict.Blocked}
	afterLoad := events.Event{Time: at.Add(2 * time.Second), Client: "10.0.0.2", Image: "docker.io/a/b:1", Digest: digest.FromString("logged"), Decision: verdict.Blocked}

	l := NewLive()
	l.addShared(logged) // shared while the audit log was read...
	l.addShared(notLogged)
	l.load([]storage.AuditRecord{events.AuditRecord(logged)}) // ...which had it
	l.addShared(afterLoad)                                    // a new attempt counts

	if got := len(l.Recent(recentEvents)); got != 3 {
		t.Errorf("%d decisions kept, want 3: %+v", got, l.Recent(recentEvents))
	}
	attempts := map[digest.Digest]int{}
	for _, b := range l.BlockedImages() {
		attempts[b.Digest] = b.Attempts
	}
	if attempts[logged.Digest] != 2 || attempts[notLogged.Digest] != 1 {
		t.Errorf("attempts = %v, want 2 for the logged digest and 1 for the other", attempts)
	}
}

// A refusal for the content or its name goes on the blocked list, and
// only those; the page shows each outcome in its class.
func TestLiveBlockedListTakesContentRefusals(t *testing.T) {
	want := map[verdict.Outcome]string{
		verdict.Allowed: "ok", verdict.Blocked: "bad", verdict.Failed: "bad", verdict.Pending: "warn",
		verdict.UpstreamFailed: "warn", verdict.Overridden: "info", verdict.Index: "muted",
		verdict.Policy: "bad", verdict.RetroactiveBlock: "bad",
	}
	for _, o := range verdict.Outcomes() {
		l := NewLive()
		l.Emit(events.Event{Time: time.Now(), Digest: digest.FromString(o.String()), Decision: o, Image: "docker.io/x/y:1"})
		blocked := len(l.BlockedImages()) == 1
		if c := class(o); c != want[o] || blocked != (c == "bad") {
			t.Errorf("%v: class %q (want %q), on the blocked list: %v", o, c, want[o], blocked)
		}
	}
}
