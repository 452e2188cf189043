package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
)

var errUnexpectedStatus = errors.New("unexpected status")

// Tags fetches one page of GET /v2/<repo>/tags/list (n and last as the
// distribution spec has them; n <= 0 and last == "" are omitted) and returns
// the body as upstream sent it and the Link header naming the next page.
func (r *Registry) Tags(ctx context.Context, repo string, n int, last string) ([]byte, string, error) {
	query := url.Values{}
	if n > 0 {
		query.Set("n", strconv.Itoa(n))
	}
	if last != "" {
		query.Set("last", last)
	}
	q := request{method: http.MethodGet, repo: repo, kind: "tags", path: "tags/list", query: query}
	resp, err := r.send(ctx, q)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := readCapped(resp, maxTagsSize)
	if err != nil {
		return nil, "", r.errorFor(q, 0, err)
	}
	return body, resp.Header.Get("Link"), nil
}
