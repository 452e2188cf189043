package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/pullgate/pullgate/proxy/upstream"
)

// tagList serves GET /v2/<name>/tags/list from upstream: tags are names,
// not content, so there is nothing to gate.
func (s *Server) tagList(w http.ResponseWriter, r *http.Request, t target) {
	n := 0
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			writeError(w, r, &apiError{Code: errcode.ErrorCodePaginationNumberInvalid, Message: fmt.Sprintf("invalid n %q", truncate(v, 20))})
			return
		}
	}
	body, link, err := s.upstream(t).Tags(r.Context(), t.Repo, n, r.URL.Query().Get("last"))
	if err != nil {
		if upstream.IsNotFound(err) {
			writeError(w, r, &apiError{Code: errcode.ErrorCodeNameUnknown, Message: fmt.Sprintf("pullgate: %s/%s: not found upstream", t.Registry, t.Repo)})
			return
		}
		writeError(w, r, upstreamError(fmt.Sprintf("pullgate: list tags of %s/%s", t.Registry, t.Repo), err))
		return
	}
	if link = relativeLink(link); link != "" {
		w.Header().Set("Link", link)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}

// relativeLink keeps the path and query of a pagination Link header
// (`<url>; rel="next"`), so that the next page is asked of pullgate, never
// of the upstream host.
func relativeLink(link string) string {
	start, end := strings.IndexByte(link, '<'), strings.IndexByte(link, '>')
	if start < 0 || end < start {
		return ""
	}
	u, err := url.Parse(link[start+1 : end])
	if err != nil || !strings.HasPrefix(u.Path, "/v2/") {
		return ""
	}
	return "<" + (&url.URL{Path: u.Path, RawQuery: u.RawQuery}).String() + ">" + link[end+1:]
}
