package vomo

import (
	"context"
	"fmt"
	"hash/maphash"
	"net/url"
	"strconv"
	"time"
)

// WalkResult is what a walk saw. A walk that returns nil error completed;
// it is Trusted only if nothing suggested the list changed under it.
type WalkResult struct {
	Pages     int
	Records   int
	Requests  int
	Retries   int
	Statuses  map[int]int
	Throttled time.Duration // time spent waiting on 429s
	// Trusted is false when the list changed during the walk (total moved,
	// an id came twice, a page number skipped): records may have been
	// skipped, so a checkpoint must not move past this walk's window.
	Trusted bool
	Reason  string
	// FirstTotal and LastTotal are meta.total of the first and last page.
	FirstTotal, LastTotal int
	// ServerNow is the server time of the last response.
	ServerNow time.Time
	// NextURL is the page a failed walk stopped at ("" once complete):
	// WalkURL resumes there.
	NextURL string
}

// PageFunc handles one page. Returning an error stops the walk with it.
type PageFunc func(ctx context.Context, p Page) error

// Walk lists path with query q, starting at q's page (default 1) and
// following links.next until it is null, calling fn for each page in order.
// Errors: an *APIError (errors.Is ErrUnauthorized, ErrRateLimited, ...),
// a *DecodeError, ErrTooManyPages, fn's error, or the context's.
func (c *Client) Walk(ctx context.Context, path string, q url.Values, fn func(ctx context.Context, p Page) error) (WalkResult, error) {
	return c.walk(ctx, c.resolve(path, q), fn)
}

// WalkURL walks from an absolute page URL, such as WalkResult.NextURL or a
// saved links.next, which must be on the client's API host.
func (c *Client) WalkURL(ctx context.Context, pageURL string, fn func(ctx context.Context, p Page) error) (WalkResult, error) {
	u, err := c.sameOrigin(pageURL)
	if err != nil {
		return WalkResult{Trusted: true, Statuses: map[int]int{}}, err
	}
	return c.walk(ctx, u, fn)
}

// sameOrigin parses a link and refuses one that leaves the API host: the
// token is sent with every request and must not go elsewhere.
func (c *Client) sameOrigin(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, &DecodeError{URL: "(link)", Reason: "unparsable URL", Err: err}
	}
	if u.Scheme != c.base.Scheme || u.Host != c.base.Host {
		return nil, &DecodeError{URL: redact(u), Reason: "link leaves the API host " + c.base.Host}
	}
	return u, nil
}

func (c *Client) walk(ctx context.Context, u *url.URL, fn PageFunc) (res WalkResult, err error) {
	res = WalkResult{Trusted: true, Statuses: map[int]int{}, FirstTotal: -1}
	var st callStats
	defer func() {
		res.Requests, res.Retries, res.Throttled = st.Requests, st.Retries, st.Throttled
		for k, v := range st.Statuses {
			res.Statuses[k] += v
		}
	}()
	untrust := func(reason string) {
		if res.Trusted {
			res.Trusted, res.Reason = false, reason
		}
	}
	// Ids are remembered by a 64-bit hash: a million ids cost ~20 MB, and a
	// false "seen twice" (odds ~1e-8 at 1M) only costs an extra re-walk.
	seed := maphash.MakeSeed()
	seen := map[uint64]struct{}{}
	expectPage := 0
	for {
		if res.Pages >= c.maxPages {
			res.NextURL = u.String()
			return res, fmt.Errorf("vomo: walk of %s: %w (cap %d)", c.endpoint(u), ErrTooManyPages, c.maxPages)
		}
		resp, err := c.do(ctx, u, &st)
		if err != nil {
			res.NextURL = u.String()
			return res, err
		}
		p, err := DecodePage(resp.body, redact(u))
		if err != nil {
			res.NextURL = u.String()
			return res, err
		}
		p.ServerTime = resp.serverTime
		res.ServerNow = resp.serverTime
		res.Pages++
		if res.FirstTotal < 0 {
			res.FirstTotal = p.Meta.Total
		} else if p.Meta.Total != res.LastTotal {
			untrust(fmt.Sprintf("meta.total moved from %d to %d at page %d", res.LastTotal, p.Meta.Total, p.Meta.CurrentPage))
		}
		res.LastTotal = p.Meta.Total
		if expectPage != 0 && p.Meta.CurrentPage != expectPage {
			untrust(fmt.Sprintf("links.next led to page %d, want %d", p.Meta.CurrentPage, expectPage))
		}
		for _, r := range p.Records {
			h := maphash.String(seed, r.ID)
			if _, dup := seen[h]; dup {
				untrust("id " + r.ID + " seen twice (page " + strconv.Itoa(p.Meta.CurrentPage) + ")")
			}
			seen[h] = struct{}{}
		}
		res.Records += len(p.Records) + len(p.Malformed) // set aside, still listed
		if err := fn(ctx, p); err != nil {
			res.NextURL = u.String()
			return res, err
		}
		if p.Links.Next == "" {
			if res.Records < p.Meta.Total && p.Meta.CurrentPage > 1 && res.Pages == p.Meta.CurrentPage {
				untrust(fmt.Sprintf("walk saw %d records of a total of %d", res.Records, p.Meta.Total))
			}
			return res, nil
		}
		next, err := c.sameOrigin(p.Links.Next)
		if err != nil {
			err.(*DecodeError).Field = "links.next"
			res.NextURL = u.String()
			return res, err
		}
		if next.String() == u.String() {
			res.NextURL = u.String()
			return res, &DecodeError{URL: redact(u), Field: "links.next", Reason: "points to the same page"}
		}
		expectPage = p.Meta.CurrentPage + 1
		u = next
	}
}
