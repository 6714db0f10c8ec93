package sim

import (
	"strconv"
)

// Resource names: the list paths under /v1 and the names of the Go and
// admin control APIs. Completions belong to a form (row.parent).
const (
	Projects      = "projects"
	Groups        = "groups"
	Campaigns     = "campaigns"
	Certificates  = "certificates"
	Forms         = "forms"
	Completions   = "completions"
	Organizations = "organizations"
)

// Resources lists every resource the simulator serves.
var Resources = []string{Users, Projects, Groups, Campaigns, Certificates, Forms, Completions, Organizations}

type renderFunc func(e *enc, c *customer, id int64, r *row, detail bool)

type resourceDef struct {
	base   int64
	render renderFunc
}

var resourceDefs map[string]resourceDef

func init() {
	// Assigned in init: renderers reach other tables through the customer,
	// and a package-level literal would form an initialization cycle.
	resourceDefs = map[string]resourceDef{
		Users:         {10001, renderUser},
		Projects:      {5001, renderProject},
		Groups:        {301, renderGroup},
		Campaigns:     {10000, renderCampaign},
		Certificates:  {101, renderCertificate},
		Forms:         {201, renderForm},
		Completions:   {70001, renderCompletion},
		Organizations: {1, renderOrganization},
	}
}

const dateIDBase = 1_000_000 // project date ids: dateIDBase + project row index*16 + k

// pick returns the id of a live record of resource chosen by h, or 0.
func (c *customer) pick(resource string, h uint64) int64 {
	t := c.tables[resource]
	if t == nil || t.live() == 0 {
		return 0
	}
	return t.id(t.byID[h%uint64(t.live())])
}

// orgOf returns the id, name and slug of a row's organization.
func (c *customer) orgOf(r *row) (int64, string, string) {
	t := c.tables[Organizations]
	idx := uint32(r.org)
	if int(idx) >= len(t.rows) {
		idx = 0
	}
	return t.id(idx), c.orgName(idx), c.orgSlug(idx)
}

func (c *customer) orgName(idx uint32) string {
	if idx == 0 {
		return c.id + " Volunteers"
	}
	return c.id + " Chapter " + strconv.Itoa(int(idx))
}

func (c *customer) orgSlug(idx uint32) string {
	if idx == 0 {
		return c.id
	}
	return c.id + "-chapter-" + strconv.Itoa(int(idx))
}

var adjectives = [...]string{"Community", "Riverside", "Weekend", "Youth", "Senior", "Green", "Downtown", "Harvest", "Winter", "Literacy"}
var nouns = [...]string{"Food Drive", "Cleanup", "Tutoring", "Shelter Shift", "Garden Day", "Blood Drive", "Coat Drive", "Park Restoration", "Meal Delivery", "Fun Run"}

func title(h uint64) string {
	return adjectives[h%uint64(len(adjectives))] + " " + nouns[(h>>8)%uint64(len(nouns))]
}

var privacies = [...]string{"PUBLIC", "PUBLIC", "PRIVATE", "UNLISTED"}

// projectDates is how many dates a project has in this version of its schedule.
func projectDates(c *customer, id int64, r *row) int {
	return 1 + int(hash3(c.seed, id, r.aux|1<<31)%5)
}

func renderDate(e *enc, c *customer, projectID int64, idx uint32, r *row, k int, withParticipants bool) {
	h := hash3(c.seed, projectID*16+int64(k), r.aux)
	starts := r.created + int64(k)*7*86400 + int64(h%86400)
	e.open("", '{')
	e.str("type", "project_date")
	e.id("id", dateIDBase+int64(idx)*16+int64(k))
	e.id("project_id", projectID)
	e.time("starts_at", starts)
	e.time("ends_at", starts+3*3600)
	e.num("capacity", int64(5+h%20))
	if withParticipants {
		e.open("participants", '[')
		for p := range int(h>>20) % 4 {
			renderParticipation(e, c, c.pick(Users, h>>uint(8*p)), projectID, dateIDBase+int64(idx)*16+int64(k), starts, h>>uint(4*p))
		}
		e.close(']')
	}
	e.close('}')
}

func renderParticipation(e *enc, c *customer, userID, projectID, dateID, starts int64, h uint64) {
	e.open("", '{')
	e.id("user_id", userID)
	e.id("project_id", projectID)
	e.id("project_date_id", dateID)
	e.time("signed_up_at", starts-int64(h%(14*86400))-3600)
	if h&1 == 1 {
		e.time("checked_in_at", starts)
		e.time("checked_out_at", starts+int64(1+h%4)*1800)
	} else {
		e.null("checked_in_at")
		e.null("checked_out_at")
	}
	e.key("hours")
	e.b = strconv.AppendFloat(e.b, float64(h%9)/2, 'f', -1, 64)
	e.boolean("verified", h&2 == 2)
	e.str("role", "VOLUNTEER")
	e.num("guests", int64(h>>8)%3)
	e.close('}')
}

func renderProject(e *enc, c *customer, id int64, r *row, detail bool) {
	h := hash3(c.seed, id, r.version)
	orgID, orgName, orgSlug := c.orgOf(r)
	name := title(h)
	e.open("", '{')
	e.str("type", "project")
	e.id("id", id)
	e.str("name", name)
	e.str("project_name", name)
	e.str("description", "Help with the "+name+" (revision "+strconv.Itoa(int(r.version))+").")
	e.str("url", "https://app.vomo.org/"+orgSlug+"/projects/"+strconv.FormatInt(id, 10))
	e.id("organization_id", orgID)
	e.str("organization", orgName)
	e.str("organization_slug", orgSlug)
	e.boolean("anytime", h%7 == 0)
	e.boolean("draft", h%11 == 0)
	e.str("privacy", privacies[(h>>12)%4])
	e.num("age_limit", int64((h>>16)%19))
	e.boolean("allow_guests", h&(1<<20) != 0)
	e.time("created_at", r.created)
	e.time("updated_at", r.updated)
	if h%11 == 0 {
		e.null("published_at")
	} else {
		e.time("published_at", r.created)
	}
	t := c.tables[Projects]
	idx := uint32(id - t.base)
	e.key("next_date")
	renderDate(e, c, id, idx, r, 0, false)
	if detail {
		e.open("all_dates", '[')
		for k := range projectDates(c, id, r) {
			renderDate(e, c, id, idx, r, k, false)
		}
		e.close(']')
	}
	e.close('}')
}

func renderGroup(e *enc, c *customer, id int64, r *row, detail bool) {
	h := hash3(c.seed, id, r.version)
	e.open("", '{')
	e.id("id", id)
	e.str("name", adjectives[h%uint64(len(adjectives))]+" Team "+strconv.FormatInt(id, 10))
	e.str("description", "Group revision "+strconv.Itoa(int(r.version)))
	e.boolean("has_subgroups", false)
	if r.parent != 0 {
		e.id("parent_id", int64(r.parent))
	} else {
		e.null("parent_id")
	}
	e.time("updated_at", r.updated)
	e.time("created_at", r.created)
	e.close('}')
}

// groupMembers returns the member user ids of a group at its membership version.
func groupMembers(c *customer, id int64, r *row) []int64 {
	h := hash3(c.seed, id, r.aux|1<<30)
	n := int(h % 40)
	out := make([]int64, 0, n)
	seen := map[int64]bool{}
	for i := range n {
		u := c.pick(Users, mix(h+uint64(i)))
		if u != 0 && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

func renderCampaign(e *enc, c *customer, id int64, r *row, detail bool) {
	h := hash3(c.seed, id, r.version)
	_, orgName, orgSlug := c.orgOf(r)
	e.open("", '{')
	e.str("type", "campaign")
	e.id("id", id)
	e.str("campaign_name", adjectives[h%uint64(len(adjectives))]+" Initiative "+strconv.Itoa(int(r.version)))
	e.str("description", "A campaign of "+orgName)
	e.str("url", "https://app.vomo.org/"+orgSlug+"/campaigns/"+strconv.FormatInt(id, 10))
	e.str("organization", orgName)
	e.str("organization_slug", orgSlug)
	e.id("author_id", c.pick(Users, h))
	e.str("logo_url", "https://cdn.vomo.org/logos/"+strconv.FormatUint(h%100000, 10)+".png")
	e.time("updated_at", r.updated)
	e.time("created_at", r.created)
	e.close('}')
}

func renderCertificate(e *enc, c *customer, id int64, r *row, detail bool) {
	h := hash3(c.seed, id, r.version)
	e.open("", '{')
	e.str("type", "certificate")
	e.id("id", id)
	e.str("name", nouns[h%uint64(len(nouns))]+" Certified")
	e.str("description", "Certificate revision "+strconv.Itoa(int(r.version)))
	e.num("expiration_months", int64(6*(1+h%4)))
	e.time("updated_at", r.updated)
	e.time("created_at", r.created)
	e.close('}')
}

func renderForm(e *enc, c *customer, id int64, r *row, detail bool) {
	h := hash3(c.seed, id, r.version)
	e.open("", '{')
	e.str("type", "form")
	e.id("id", id)
	e.str("name", adjectives[h%uint64(len(adjectives))]+" Waiver")
	e.str("description", "Form revision "+strconv.Itoa(int(r.version)))
	e.time("updated_at", r.updated)
	e.time("created_at", r.created)
	e.close('}')
}

func renderCompletion(e *enc, c *customer, id int64, r *row, detail bool) {
	h := hash3(c.seed, id, r.version)
	formID := c.tables[Forms].id(r.parent)
	userID := c.pick(Users, h)
	e.open("", '{')
	e.str("type", "form_completion")
	e.id("id", id)
	e.id("form_id", formID)
	e.id("user_id", userID)
	if p := c.pick(Projects, h>>8); p != 0 && h&1 == 1 {
		e.id("project_id", p)
	} else {
		e.null("project_id")
	}
	e.null("participation_id")
	e.open("field_responses", '[')
	for k := range 1 + int(h>>16)%3 {
		e.open("", '{')
		e.str("type", "form_field_response")
		e.id("id", id*4+int64(k))
		e.id("form_completion_id", id)
		e.id("user_id", userID)
		e.id("field_id", formID*10+int64(k))
		e.str("value", "answer "+strconv.FormatUint((h>>uint(8*k))%1000, 10)+" v"+strconv.Itoa(int(r.version)))
		e.close('}')
	}
	e.close(']')
	e.time("created_at", r.created)
	e.time("updated_at", r.updated)
	e.close('}')
}

func renderOrganization(e *enc, c *customer, id int64, r *row, detail bool) {
	t := c.tables[Organizations]
	idx := uint32(id - t.base)
	e.open("", '{')
	e.id("id", id)
	e.str("name", c.orgName(idx))
	e.str("slug", c.orgSlug(idx))
	e.str("type", "NPO")
	e.str("description", "Organization revision "+strconv.Itoa(int(r.version)))
	e.str("email", "contact@"+c.orgSlug(idx)+".example.org")
	e.str("phone", "+1-555-0"+strconv.Itoa(100+int(idx)))
	e.str("groups_moniker", "Groups")
	e.str("project_moniker", "Opportunities")
	e.str("campaign_moniker", "Initiatives")
	if idx == 0 {
		e.null("parent_id")
	} else {
		e.id("parent_id", t.id(0))
	}
	e.time("created_at", r.created)
	e.time("updated_at", r.updated)
	if r.flags&flagOrgDeleted != 0 {
		e.time("deleted_at", r.updated)
	} else {
		e.null("deleted_at")
	}
	if detail {
		e.open("children", '[')
		if idx == 0 {
			for _, k := range t.byID[1:] {
				e.open("", '{')
				e.id("id", t.id(k))
				e.str("slug", c.orgSlug(k))
				e.close('}')
			}
		}
		e.close(']')
	}
	e.close('}')
}
