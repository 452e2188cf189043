package proxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
)

// The blocked list keeps at most maxBlocked digests (the ones seen last)
// and maxBlockedClients addresses each, however many refusals come in.
func TestLiveBlockedListIsBounded(t *testing.T) {
	l := newLive()
	start := time.Now()
	for i := range 3 * maxBlocked {
		l.add(Event{Time: start.Add(time.Duration(i) * time.Millisecond), Client: fmt.Sprintf("10.0.%d.%d", i>>8, i&255),
			Digest: digest.FromString(fmt.Sprint(i)), Decision: verdict.Policy, Image: "docker.io/x/y"})
	}
	if n := len(l.blockedImages()); n != maxBlocked {
		t.Fatalf("%d blocked digests kept, want %d", n, maxBlocked)
	}
	if _, ok := l.blocked[digest.FromString(fmt.Sprint(3*maxBlocked-1))]; !ok {
		t.Fatal("the newest refusal was dropped instead of the oldest")
	}
	d := digest.FromString("one")
	for i := range 1000 {
		l.add(Event{Time: time.Now(), Client: fmt.Sprintf("10.1.%d.%d", i>>8, i&255), Digest: d, Decision: verdict.Blocked})
	}
	b := l.blocked[d]
	if len(b.Clients) > maxBlockedClients+1 || b.Clients[otherClients] != 1000-maxBlockedClients || b.Attempts != 1000 {
		t.Fatalf("%d client entries, %d under %q, %d attempts", len(b.Clients), b.Clients[otherClients], otherClients, b.Attempts)
	}
}
