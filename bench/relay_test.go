package bench

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// relay is a TCP relay on loopback that caps the bytes going to the
// client at rate bytes per second, all of its connections together: the
// client's own link to the mirror (125 MB/s is a 1 Gbit/s LAN). The
// requests going up are not paced; they are small.
//
// How it throttles: every chunk read from the mirror (at most 32 KiB)
// reserves its transmission time on one shared schedule, and is written
// to the client only when the schedule reaches its end. The schedule may
// lag the clock by at most 2 ms (a NIC's queue), so a late wake-up does not
// lose bandwidth and an idle link does not bank it.
type relay struct {
	ln     net.Listener
	target string
	pace   *pacer

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startRelay(b testing.TB, target string, rate int64) *relay {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatalf("relay: listen: %v", err)
	}
	r := &relay{ln: ln, target: target, pace: &pacer{rate: float64(rate)}, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r
}

func (r *relay) url() string { return "http://" + r.ln.Addr().String() }

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns[c], r.conns[up] = struct{}{}, struct{}{}
		r.mu.Unlock()
		r.wg.Add(2)
		go func() { defer r.wg.Done(); io.Copy(up, c); up.Close(); c.Close() }()
		go func() { defer r.wg.Done(); r.down(c, up); up.Close(); c.Close() }()
	}
}

// down copies the mirror's bytes to the client on the shared schedule.
func (r *relay) down(client, mirror net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := mirror.Read(buf)
		if n > 0 {
			r.pace.wait(n)
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// pacer is one link's schedule.
type pacer struct {
	rate float64 // bytes per second
	mu   sync.Mutex
	next time.Time
}

const pacerSlack = 2 * time.Millisecond

func (p *pacer) wait(n int) {
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now.Add(-pacerSlack)) {
		p.next = now.Add(-pacerSlack)
	}
	p.next = p.next.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	due := p.next
	p.mu.Unlock()
	if d := time.Until(due); d > 0 {
		time.Sleep(d) // pacing, not waiting for a condition
	}
}
