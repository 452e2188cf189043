package proxy

import (
	"github.com/pullgate/pullgate/proxy/events"
)

// Event is one decision pullgate made about a pull (events.Event).
type Event = events.Event

// event is Event under the name the handlers use.
type event = Event

// record hands one decision to the sinks (events.Fanout): the log, the
// metrics, the admin page (this replica's and, through the event bus, the
// others'), the audit log and the alerts. None of them can hold up the
// pull: the bus, the audit log and the webhook are queued.
func (s *Server) record(ev event) { s.events.Emit(ev) }
