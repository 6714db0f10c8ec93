package sim

import (
	"slices"
	"sort"
	"sync"
)

// row is everything stored per record: a record's fields are generated from
// (seed, id, version), so a million rows cost about 40 MB with both indexes.
type row struct {
	created int64 // unix seconds
	updated int64 // unix seconds
	version uint32
	aux     uint32 // changes that do not advance updated_at (participations, project dates)
	parent  uint32 // owning form of a completion, project of a date; 0 otherwise
	org     uint16 // index in the customer's org family
	flags   uint16
}

const (
	flagDeleted    uint16 = 1 << iota
	flagLeft              // user whose membership was removed but who stays listed
	flagOrgDeleted        // organization with deleted_at set
)

// table is one resource of one customer. Ids are dense from base, so a row
// is found by subtraction; the two indexes hold live rows only.
type table struct {
	base  int64
	rows  []row
	byID  []uint32 // ascending id (row index order)
	byUpd []uint32 // ascending (updated, id)
	gen   uint64   // bumped on every mutation; keys the list cache

	cacheMu sync.Mutex
	cache   map[string]cached
}

type cached struct {
	gen  uint64
	idxs []uint32
}

func newTable(base int64) *table {
	return &table{base: base, cache: map[string]cached{}}
}

func (t *table) live() int { return len(t.byID) }

// lookup returns the row index of a live id.
func (t *table) lookup(id int64) (uint32, bool) {
	i := id - t.base
	if i < 0 || i >= int64(len(t.rows)) || t.rows[i].flags&flagDeleted != 0 {
		return 0, false
	}
	return uint32(i), true
}

func (t *table) id(idx uint32) int64 { return t.base + int64(idx) }

// updLess orders row indexes by (updated, id).
func (t *table) updPos(updated int64, idx uint32) int {
	return sort.Search(len(t.byUpd), func(k int) bool {
		r := t.byUpd[k]
		u := t.rows[r].updated
		return u > updated || (u == updated && r >= idx)
	})
}

// insert appends a new row and returns its index.
func (t *table) insert(r row) uint32 {
	idx := uint32(len(t.rows))
	t.rows = append(t.rows, r)
	t.byID = append(t.byID, idx)
	p := t.updPos(r.updated, idx)
	t.byUpd = slices.Insert(t.byUpd, p, idx)
	t.gen++
	return idx
}

// setUpdated moves a row in the updated index.
func (t *table) setUpdated(idx uint32, updated int64) {
	r := &t.rows[idx]
	if r.updated == updated {
		return
	}
	p := t.updPos(r.updated, idx)
	t.byUpd = slices.Delete(t.byUpd, p, p+1)
	r.updated = updated
	p = t.updPos(updated, idx)
	t.byUpd = slices.Insert(t.byUpd, p, idx)
	t.gen++
}

// remove hard-deletes a row: no tombstone is ever served.
func (t *table) remove(idx uint32) {
	r := &t.rows[idx]
	p := t.updPos(r.updated, idx)
	t.byUpd = slices.Delete(t.byUpd, p, p+1)
	q, _ := slices.BinarySearch(t.byID, idx)
	t.byID = slices.Delete(t.byID, q, q+1)
	r.flags |= flagDeleted
	t.gen++
}

// resort rebuilds the updated index after bulk edits of updated times.
func (t *table) resort() {
	slices.SortFunc(t.byUpd, func(a, b uint32) int {
		ua, ub := t.rows[a].updated, t.rows[b].updated
		switch {
		case ua < ub:
			return -1
		case ua > ub:
			return 1
		}
		return int(int64(a) - int64(b))
	})
	t.gen++
}

// filter selects and orders live rows for a list request.
type filter struct {
	updAfter, updBefore int64 // inclusive; 0 / maxInt when unset
	crAfter, crBefore   int64
	byUpdated           bool   // order by (updated_at, id) instead of id
	key                 string // cache key of pred; "" when pred is nil
	pred                func(idx uint32, r *row) bool
}

const noUpper = int64(1) << 62

// selectRows returns the ordered row indexes matching f. The result may
// alias an index or a cache entry: callers read it under the same lock and
// never modify it.
func (t *table) selectRows(f filter) []uint32 {
	lo := sort.Search(len(t.byUpd), func(k int) bool { return t.rows[t.byUpd[k]].updated >= f.updAfter })
	hi := sort.Search(len(t.byUpd), func(k int) bool { return t.rows[t.byUpd[k]].updated > f.updBefore })
	if hi < lo {
		hi = lo
	}
	plain := f.crAfter == 0 && f.crBefore == noUpper && f.pred == nil
	if plain && f.byUpdated {
		return t.byUpd[lo:hi]
	}
	if plain && lo == 0 && hi == len(t.byUpd) {
		return t.byID
	}
	key := cacheKey(f, lo, hi)
	t.cacheMu.Lock()
	c, ok := t.cache[key]
	t.cacheMu.Unlock()
	if ok && c.gen == t.gen {
		return c.idxs
	}
	match := func(idx uint32) bool {
		r := &t.rows[idx]
		if r.created < f.crAfter || r.created > f.crBefore {
			return false
		}
		return f.pred == nil || f.pred(idx, r)
	}
	var out []uint32
	if f.byUpdated || (hi-lo)*8 < len(t.byUpd) {
		for _, idx := range t.byUpd[lo:hi] {
			if match(idx) {
				out = append(out, idx)
			}
		}
		if !f.byUpdated {
			slices.Sort(out)
		}
	} else {
		for _, idx := range t.byID {
			if u := t.rows[idx].updated; u >= f.updAfter && u <= f.updBefore && match(idx) {
				out = append(out, idx)
			}
		}
	}
	t.cacheMu.Lock()
	if len(t.cache) > 64 {
		clear(t.cache)
	}
	t.cache[key] = cached{gen: t.gen, idxs: out}
	t.cacheMu.Unlock()
	return out
}

func cacheKey(f filter, lo, hi int) string {
	b := make([]byte, 0, 64)
	b = appendInt(b, int64(lo))
	b = append(b, ':')
	b = appendInt(b, int64(hi))
	b = append(b, ':')
	b = appendInt(b, f.crAfter)
	b = append(b, ':')
	b = appendInt(b, f.crBefore)
	if f.byUpdated {
		b = append(b, 'u')
	}
	b = append(b, ':')
	b = append(b, f.key...)
	return string(b)
}

// tieBoundaries gives the rows at positions k*size-1 and k*size of the
// updated index the same updated_at. Only values between the two change, so
// both positions still hold a row of the shared second after re-sorting.
func (t *table) tieBoundaries(size int) {
	for i := size - 1; i+1 < len(t.byUpd); i += size {
		a, b := t.byUpd[i], t.byUpd[i+1]
		if b > a { // ties sort by id, so b stays right after a
			t.rows[b].updated = t.rows[a].updated
		} else {
			t.rows[a].updated = t.rows[b].updated
		}
	}
	t.resort()
}
