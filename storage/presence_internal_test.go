package storage

import (
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"
)

// A driver's answer given before a removal is not remembered after it, and
// the number remembered stays bounded.
func TestPresenceRacesAndBound(t *testing.T) {
	d := digest.FromString("d")
	p := newPresence(4)
	gen := p.generation() // a look-up starts
	p.forget(d)           // a removal runs meanwhile
	p.found(d, present{size: 1}, gen)
	if _, ok := p.get(d); ok {
		t.Fatal("a look-up that raced a removal was remembered")
	}
	p.found(d, present{size: 1}, p.generation())
	if e, ok := p.get(d); !ok || e.size != 1 {
		t.Fatal("a look-up with no removal since it began was not remembered")
	}
	for i := range 10 {
		p.committed(digest.FromString(fmt.Sprint(i)), present{})
	}
	if n := p.len(); n != 4 {
		t.Fatalf("%d remembered, want the bound of 4", n)
	}
}
