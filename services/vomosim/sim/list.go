package sim

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// scopeFunc adds resource-specific filters to a list request. It runs
// under the customer's read lock; a non-zero status answers the request.
type scopeFunc func(r *http.Request, q url.Values, c *customer, f *filter) (status int, field, msg string)

// serveList serves a paginated list of resource.
func (s *Sim) serveList(resource string, scope scopeFunc) v1Func {
	render := resourceDefs[resource].render
	return func(w http.ResponseWriter, r *http.Request, c *customer, b Behaviour) {
		q := r.URL.Query()
		f, bad, ok := listFilter(q)
		if !ok {
			validationError(w, bad, "The "+strings.ReplaceAll(bad, "_", " ")+" is not a valid date.")
			return
		}
		f.byUpdated = b.Order == "updated_at"
		page := pageParam(q)
		ps := s.opts.PageSize
		if b.MidWalk != nil && page >= 2 && (page-2)%max(1, b.MidWalk.EveryPages) == 0 {
			if code := s.midWalk(r, q, c, resource, scope, f, (page-1)*ps, *b.MidWalk); code != 0 {
				return
			}
		}

		e := encPool.Get().(*enc)
		defer encPool.Put(e)
		e.b = e.b[:0]
		e.wf = b.Wire

		c.mu.RLock()
		if scope != nil {
			if code, field, msg := scope(r, q, c, &f); code != 0 {
				c.mu.RUnlock()
				if code == http.StatusUnprocessableEntity {
					validationError(w, field, msg)
				} else {
					writeMessage(w, code, msg)
				}
				return
			}
		}
		t := c.tables[resource]
		idxs := t.selectRows(f)
		total := len(idxs)
		from := min((page-1)*ps, total)
		to := min(from+ps, total)
		e.raw(`{"data":[`)
		for _, idx := range idxs[from:to] {
			id := t.id(idx)
			e.lay = e.wf.layout(id)
			render(e, c, id, &t.rows[idx], false)
		}
		c.mu.RUnlock()
		e.raw(`]`)
		s.envelopeTail(e, r, q, page, from, to, total)
		writeJSON(w, http.StatusOK, e.b)
	}
}

// envelopeTail appends links and meta and closes the envelope.
func (s *Sim) envelopeTail(e *enc, r *http.Request, q url.Values, page, from, to, total int) {
	ps := s.opts.PageSize
	path := s.baseURL(r) + r.URL.Path
	lastPage := max(1, (total+ps-1)/ps)
	link := func(k string, p int, ok bool) {
		e.key(k)
		if !ok {
			e.raw("null")
			return
		}
		q.Set("page", strconv.Itoa(p))
		e.b = appendJSONString(e.b, path+"?"+q.Encode())
	}
	e.open("links", '{')
	link("first", 1, true)
	link("last", lastPage, true)
	link("prev", page-1, page > 1)
	link("next", page+1, page < lastPage)
	e.close('}')
	meta := func(k string, v int, ok bool) {
		switch {
		case !ok:
			e.null(k)
		case e.wf.StringMeta:
			e.str(k, strconv.Itoa(v))
		default:
			e.num(k, int64(v))
		}
	}
	e.open("meta", '{')
	meta("current_page", page, true)
	meta("from", from+1, from < to)
	meta("to", to, from < to)
	e.str("path", path)
	meta("per_page", ps, true)
	meta("total", total, true)
	meta("last_page", lastPage, true)
	e.close('}')
	e.close('}')
}

// midWalk mutates the list a walk is reading, before serving one of its
// later pages: records of earlier pages updated or deleted, records inserted.
func (s *Sim) midWalk(r *http.Request, q url.Values, c *customer, resource string, scope scopeFunc, f filter, before int, m MidWalk) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if scope != nil {
		if code, _, _ := scope(r, q, c, &f); code != 0 {
			return 0 // the request itself will answer the error
		}
	}
	t := c.tables[resource]
	now := s.clock(c).Unix()
	earlier := func() (uint32, bool) {
		idxs := t.selectRows(f)
		n := min(before, len(idxs))
		if n == 0 {
			return 0, false
		}
		return idxs[c.rng.IntN(n)], true
	}
	for range m.Updates {
		if idx, ok := earlier(); ok {
			t.rows[idx].version++
			t.setUpdated(idx, c.stamp(resource, now))
			c.emit(resource, "updated", idx)
		}
	}
	for range m.Deletes {
		if idx, ok := earlier(); ok {
			c.emitDeleted(resource, idx, now)
			t.remove(idx)
		}
	}
	for range m.Inserts {
		c.emit(resource, "created", c.insert(resource, now))
	}
	return 0
}

// insert creates a record of resource at now. Callers hold c.mu for writing.
func (c *customer) insert(resource string, now int64) uint32 {
	t := c.tables[resource]
	r := row{created: now, updated: c.stamp(resource, now)}
	if orgs := c.tables[Organizations].live(); orgs > 0 && resource != Organizations {
		r.org = uint16(c.rng.IntN(orgs))
	}
	if resource == Completions {
		forms := c.tables[Forms]
		if forms.live() > 0 {
			r.parent = forms.byID[c.rng.IntN(forms.live())]
		}
	}
	return t.insert(r)
}

func likeKey(q url.Values, names ...string) string {
	var b strings.Builder
	for _, n := range names {
		if v := q.Get(n); v != "" {
			b.WriteString(n + "=" + v + "&")
		}
	}
	return b.String()
}

// usersScope: name_like (first or last name) and email_like, case-insensitive.
func usersScope(_ *http.Request, q url.Values, c *customer, f *filter) (int, string, string) {
	name, email := strings.ToLower(q.Get("name_like")), strings.ToLower(q.Get("email_like"))
	if name == "" && email == "" {
		return 0, "", ""
	}
	t := c.tables[Users]
	f.key = likeKey(q, "name_like", "email_like")
	f.pred = func(idx uint32, r *row) bool {
		u := c.userFields(t.id(idx), r)
		if name != "" && !strings.Contains(strings.ToLower(u.first), name) && !strings.Contains(strings.ToLower(u.last), name) {
			return false
		}
		return email == "" || strings.Contains(strings.ToLower(u.email), email)
	}
	return 0, "", ""
}

// projectsScope: org_slug (comma-separated), published, anytime, active,
// name_like. dates_before/dates_after are accepted and not applied.
func projectsScope(_ *http.Request, q url.Values, c *customer, f *filter) (int, string, string) {
	var orgs []uint16
	if v := q.Get("org_slug"); v != "" {
		ot := c.tables[Organizations]
		for _, slug := range strings.Split(v, ",") {
			for _, idx := range ot.byID {
				if c.orgSlug(idx) == strings.TrimSpace(slug) {
					orgs = append(orgs, uint16(idx))
				}
			}
		}
		if len(orgs) == 0 {
			return http.StatusUnprocessableEntity, "org_slug", "The selected org slug is invalid."
		}
	}
	flags := map[string]int{}
	for _, k := range []string{"published", "anytime", "active"} {
		switch q.Get(k) {
		case "":
		case "true", "1":
			flags[k] = 1
		case "false", "0":
			flags[k] = 0
		default:
			return http.StatusUnprocessableEntity, k, "The " + k + " field must be true or false."
		}
	}
	name := strings.ToLower(q.Get("name_like"))
	if len(orgs) == 0 && len(flags) == 0 && name == "" {
		return 0, "", ""
	}
	t := c.tables[Projects]
	f.key = likeKey(q, "org_slug", "published", "anytime", "active", "name_like")
	f.pred = func(idx uint32, r *row) bool {
		if len(orgs) > 0 && !slices.Contains(orgs, r.org) {
			return false
		}
		h := hash3(c.seed, t.id(idx), r.version)
		draft, anytime := h%11 == 0, h%7 == 0
		if v, ok := flags["published"]; ok && (v == 1) == draft {
			return false
		}
		if v, ok := flags["active"]; ok && (v == 1) == draft {
			return false
		}
		if v, ok := flags["anytime"]; ok && (v == 1) != anytime {
			return false
		}
		return name == "" || strings.Contains(strings.ToLower(title(h)), name)
	}
	return 0, "", ""
}

// completionsScope: the form in the path (404 when unknown) and user_id.
func completionsScope(r *http.Request, q url.Values, c *customer, f *filter) (int, string, string) {
	fid, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	forms := c.tables[Forms]
	formIdx, ok := forms.lookup(fid)
	if err != nil || !ok {
		return http.StatusNotFound, "", msgNotFound
	}
	var user int64
	if v := q.Get("user_id"); v != "" {
		if user, err = strconv.ParseInt(v, 10, 64); err != nil {
			return http.StatusUnprocessableEntity, "user_id", "The user id must be an integer."
		}
	}
	t := c.tables[Completions]
	f.key = "form=" + strconv.Itoa(int(formIdx)) + "&" + likeKey(q, "user_id")
	f.pred = func(idx uint32, r *row) bool {
		if r.parent != formIdx {
			return false
		}
		return user == 0 || c.pick(Users, hash3(c.seed, t.id(idx), r.version)) == user
	}
	return 0, "", ""
}

// completionOfForm checks that a completion belongs to the form in the path.
func completionOfForm(r *http.Request, c *customer, row *row) bool {
	fid, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return false
	}
	idx, ok := c.tables[Forms].lookup(fid)
	return ok && row.parent == idx
}

// serveDetail serves GET /{resource}/{id} as {"data": {...}}. A record
// created within Transient404 answers 404.
func (s *Sim) serveDetail(resource, param string, belongs func(*http.Request, *customer, *row) bool) v1Func {
	render := resourceDefs[resource].render
	return func(w http.ResponseWriter, r *http.Request, c *customer, b Behaviour) {
		n, err := strconv.ParseInt(r.PathValue(param), 10, 64)
		if err != nil {
			writeMessage(w, http.StatusNotFound, msgNotFound)
			return
		}
		e := encPool.Get().(*enc)
		defer encPool.Put(e)
		e.b = append(e.b[:0], `{"data":`...)
		e.wf = b.Wire
		e.lay = e.wf.layout(n)
		c.mu.RLock()
		t := c.tables[resource]
		idx, ok := t.lookup(n)
		if ok {
			row := &t.rows[idx]
			hidden := b.Transient404 > 0 && row.created > s.clock(c).Add(-durationOr(b.Transient404, 0)).Unix()
			ok = !hidden && (belongs == nil || belongs(r, c, row))
			if ok {
				render(e, c, n, row, true)
			}
		}
		c.mu.RUnlock()
		if !ok {
			writeMessage(w, http.StatusNotFound, msgNotFound)
			return
		}
		e.close('}')
		writeJSON(w, http.StatusOK, e.b)
	}
}

// serveDate serves GET /projects/date/{id}: one date with its participants
// and project_name.
func (s *Sim) serveDate(w http.ResponseWriter, r *http.Request, c *customer, b Behaviour) {
	n, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || n < dateIDBase {
		writeMessage(w, http.StatusNotFound, msgNotFound)
		return
	}
	e := encPool.Get().(*enc)
	defer encPool.Put(e)
	e.b = append(e.b[:0], `{"data":`...)
	e.wf = b.Wire
	e.lay = e.wf.layout(n)
	pidx, k := uint32((n-dateIDBase)/16), int((n-dateIDBase)%16)
	c.mu.RLock()
	t := c.tables[Projects]
	pid := t.id(pidx)
	_, ok := t.lookup(pid)
	if ok {
		row := &t.rows[pidx]
		ok = k < projectDates(c, pid, row)
		if ok {
			renderDate(e, c, pid, pidx, row, k, true)
			// project_name goes inside the date object.
			e.b = e.b[:len(e.b)-1]
			e.str("project_name", title(hash3(c.seed, pid, row.version)))
			e.close('}')
		}
	}
	c.mu.RUnlock()
	if !ok {
		writeMessage(w, http.StatusNotFound, msgNotFound)
		return
	}
	e.close('}')
	writeJSON(w, http.StatusOK, e.b)
}

// serveToday serves GET /projects/today: every date starting on the
// customer's current day (UTC), without project names, not paginated.
func (s *Sim) serveToday(w http.ResponseWriter, r *http.Request, c *customer, b Behaviour) {
	e := encPool.Get().(*enc)
	defer encPool.Put(e)
	e.b = append(e.b[:0], `{"data":[`...)
	e.wf = b.Wire
	c.mu.RLock()
	now := s.clock(c)
	day := now.Truncate(24 * 60 * 60 * 1e9).Unix()
	t := c.tables[Projects]
	for _, idx := range t.byID {
		row := &t.rows[idx]
		pid := t.id(idx)
		for k := range projectDates(c, pid, row) {
			h := hash3(c.seed, pid*16+int64(k), row.aux)
			starts := row.created + int64(k)*7*86400 + int64(h%86400)
			if starts >= day && starts < day+86400 {
				e.lay = e.wf.layout(pid)
				renderDate(e, c, pid, idx, row, k, false)
			}
		}
	}
	c.mu.RUnlock()
	e.raw("]}")
	writeJSON(w, http.StatusOK, e.b)
}

// serveMembers serves GET /groups/{id}/members: the group's users, paginated.
func (s *Sim) serveMembers(w http.ResponseWriter, r *http.Request, c *customer, b Behaviour) {
	n, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeMessage(w, http.StatusNotFound, msgNotFound)
		return
	}
	q := r.URL.Query()
	page := pageParam(q)
	ps := s.opts.PageSize
	e := encPool.Get().(*enc)
	defer encPool.Put(e)
	e.b = append(e.b[:0], `{"data":[`...)
	e.wf = b.Wire
	c.mu.RLock()
	g := c.tables[Groups]
	idx, ok := g.lookup(n)
	var total, from, to int
	if ok {
		members := groupMembers(c, n, &g.rows[idx])
		total = len(members)
		from = min((page-1)*ps, total)
		to = min(from+ps, total)
		users := c.tables[Users]
		for _, uid := range members[from:to] {
			if ui, ok := users.lookup(uid); ok {
				e.lay = e.wf.layout(uid)
				renderUser(e, c, uid, &users.rows[ui], false)
			}
		}
	}
	c.mu.RUnlock()
	if !ok {
		writeMessage(w, http.StatusNotFound, msgNotFound)
		return
	}
	e.raw("]")
	s.envelopeTail(e, r, q, page, from, to, total)
	writeJSON(w, http.StatusOK, e.b)
}
