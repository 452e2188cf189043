package gate

import (
	"context"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// A request that comes to wait on a prefetch or a rescan raises its scan
// to Interactive; another background caller leaves it where it is.
func TestInteractiveWaiterRaisesABackgroundIngest(t *testing.T) {
	var f flights
	release := make(chan struct{})
	info := FlightInfo{Digest: digest.FromString("layer")}
	fl := f.start(info, scanner.Background, func(*flight) (storage.Verdict, error) {
		<-release
		return storage.Verdict{}, nil
	})
	defer func() {
		close(release)
		if _, err := fl.wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}()
	if p := fl.prio.Priority(); p != scanner.Background {
		t.Fatalf("prefetch started at priority %v", p)
	}
	if again := f.start(info, scanner.Background, nil); again != fl || fl.prio.Priority() != scanner.Background {
		t.Fatalf("a second background caller: same flight %v, priority %v", again == fl, fl.prio.Priority())
	}
	if l := f.list(); len(l) != 1 || !l[0].Background {
		t.Fatalf("the operator's view of a prefetch: %+v", l)
	}
	if again := f.start(info, scanner.Interactive, nil); again != fl || fl.prio.Priority() != scanner.Interactive {
		t.Fatalf("a client joining: same flight %v, priority %v", again == fl, fl.prio.Priority())
	}
	if l := f.list(); len(l) != 1 || l[0].Background {
		t.Fatalf("the operator's view once a client waits: %+v", l)
	}
}

// One flight never serves two contexts: the same digest scanned as a config
// and as a layer are two ingests with two verdicts.
func TestFlightsKeyedByDigestAndContext(t *testing.T) {
	var f flights
	release := make(chan struct{})
	d := digest.FromString("both")
	start := func(c storage.Context) *flight {
		return f.start(FlightInfo{Digest: d, Context: c}, scanner.Interactive, func(*flight) (storage.Verdict, error) {
			<-release
			return storage.Verdict{Digest: d, Context: c}, nil
		})
	}
	config, layer := start(storage.ContextConfig), start(storage.ContextLayer)
	if config == layer {
		t.Fatal("a config and a layer ingest of one digest share a flight")
	}
	if again := start(storage.ContextLayer); again != layer {
		t.Fatal("a second layer request did not join the layer ingest")
	}
	close(release)
	for c, fl := range map[storage.Context]*flight{storage.ContextConfig: config, storage.ContextLayer: layer} {
		if v, err := fl.wait(context.Background()); err != nil || v.Context != c {
			t.Errorf("%s flight answered %+v, %v", c, v, err)
		}
	}
}
