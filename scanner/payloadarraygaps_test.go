package scanner

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// arrayGaps are what may stand between two elements of a bash array,
// some of which the search passes (a comment, a continued line, an
// append's start) and some of which end the chain or hold a piece of
// their own (a quoted word or a long word in a comment).
var arrayGaps = []string{
	" ", "\n  ", " \\\n  ", "\\\n", "\\\n\t", "  # part two\n  ", "\n  # part 3: 165 bytes\n  ",
	"\n# a\n\n# b\n", ")\nA+=(", ") ; A+=(", ")\n\nlonger_name9+=( ", " # 'quoted' word\n", " # " + strings.Repeat("x", 20) + "\n",
	" # " + strings.Repeat("y", 170) + "\n", ")\nB=(", " \"q\" ", " 'QUJD' ", "\n  $x ", " #glued\n", "\n  ABCDEFGHIJKLMNOPQRS ",
}

// randomArray is a script holding enc in an array of unquoted elements
// of random sizes with random gaps, after a random amount of text, so
// that the probes land everywhere in and around it.
func randomArray(rng *rand.Rand, enc string, rarity int) []byte {
	var b strings.Builder
	b.WriteString("#!/bin/bash\n" + strings.Repeat("echo x y z\n", rng.IntN(400)) + "A=(")
	if rng.IntN(3) == 0 {
		b.WriteString(" \\\n ")
	}
	for len(enc) > 0 {
		n := min(len(enc), 1+rng.IntN(15))
		b.WriteString(enc[:n])
		enc = enc[n:]
		gap := " "
		if rng.IntN(rarity) == 0 {
			gap = arrayGaps[rng.IntN(len(arrayGaps))]
		}
		b.WriteString(gap)
	}
	b.WriteString(")\nprintf %s \"${A[@]}\" | base64 -d\n")
	return []byte(b.String())
}

// The probing search finds in arrays with comments, continued lines and
// appends exactly what a look at every byte finds, wherever the probes
// land, and with the gaps that end a chain or hold a piece of their own.
func TestBase64ArrayGapsProbeAsEveryByte(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	enc := base64.StdEncoding.EncodeToString(samples.Filler(7000))
	found := 0
	for round := range 1000 {
		t.Run(fmt.Sprintf("round=%d", round), func(t *testing.T) {
			data := randomArray(rng, enc, []int{3, 30, 300}[round%3])
			samePayloads(t, data)
			if len(everyBytePayloads(data)) > 0 {
				found++
			}
		})
	}
	t.Logf("%d with payloads", found)
	if found == 0 {
		t.Fatal("no payload in any array: the test proves nothing")
	}
}
