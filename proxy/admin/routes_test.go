package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/pullgate/pullgate/proxy/events"
)

// Every API endpoint has a metrics label of its own: the labels come from
// a fixed list in events (request text never makes a label), which must
// keep up with the routes here.
func TestAPIRoutesHaveMetricsLabels(t *testing.T) {
	c := New(Options{})
	n := 0
	err := chi.Walk(c.Handler().(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		name, ok := strings.CutPrefix(route, "/api/")
		if !ok {
			return nil
		}
		name, _, _ = strings.Cut(name, "/")
		path := "/admin/api/" + name
		if got := events.Route(httptest.NewRequest(method, path, nil)); got != "admin-api-"+name {
			t.Errorf("%s %s is labelled %q", method, path, got)
		}
		n++
		return nil
	})
	if err != nil || n < 10 {
		t.Fatalf("walked %d API routes: %v", n, err)
	}
}
