package sim

import (
	"strconv"
	"strings"
)

// Deterministic record content: every field is a function of (seed, id,
// version), so nothing but the row is stored per record.

func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func hash3(seed uint64, id int64, v uint32) uint64 {
	return mix(seed ^ mix(uint64(id)*0x9e3779b97f4a7c15^uint64(v)<<40))
}

var firstNames = [...]string{"Ada", "Ben", "Carla", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jon",
	"Kemi", "Luca", "Maya", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara",
	"Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zoe", "Amir", "Bea", "Chen", "Dalia", "Émile", "Søren"}

var lastNames = [...]string{"Abbott", "Baker", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Huang",
	"Ivanova", "Jensen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Petrov",
	"Quispe", "Rossi", "Schmidt", "Tanaka", "Usman", "Varga", "Weber", "Xu", "Yilmaz", "Zhou", "O'Brien", "Nuñez"}

var streets = [...]string{"Main St", "Oak Ave", "Maple Rd", "Cedar Ln", "Elm St", "Park Blvd", "Lake Dr", "Hill Rd"}
var cities = [...]string{"Springfield", "Riverton", "Fairview", "Lakeside", "Georgetown", "Ashland", "Milton", "Dover"}
var genders = [...]string{"M", "F", "N"}
var userStatuses = [...]string{"VERIFIED", "VERIFIED", "VERIFIED", "UNVERIFIED"}
var roles = [...]string{"VOLUNTEER", "VOLUNTEER", "VOLUNTEER", "VOLUNTEER", "ORGANIZER", "ADMIN"}

// userFields are the generated profile of one user version.
type userFields struct {
	first, last, email, address, phone, birthday, gender, status, role string
}

func genUser(seed uint64, id int64, version uint32) userFields {
	h0 := hash3(seed, id, 0)
	hv := hash3(seed, id, version)
	first := firstNames[h0%uint64(len(firstNames))]
	last0 := lastNames[(h0>>8)%uint64(len(lastNames))]
	last := last0
	if version%5 == 4 { // a name change now and then
		last = lastNames[(hv>>8)%uint64(len(lastNames))]
	}
	idS := strconv.FormatInt(id, 10)
	email := strings.ToLower(asciiOnly(first)+"."+asciiOnly(last0)) + idS + "@example.org"
	y := 1950 + int((h0>>16)%55)
	m := 1 + int((h0>>24)%12)
	d := 1 + int((h0>>32)%28)
	bday := strconv.Itoa(y) + "-" + pad2(m) + "-" + pad2(d)
	addr := strconv.Itoa(1+int(hv%9999)) + " " + streets[(hv>>16)%uint64(len(streets))] + ", " + cities[(hv>>24)%uint64(len(cities))]
	phone := "+1-555-" + pad4(int((hv>>32)%10000))
	return userFields{
		first: first, last: last, email: email, address: addr, phone: phone, birthday: bday,
		gender: genders[(h0>>40)%3], status: userStatuses[(h0>>44)%4], role: roles[(h0>>48)%6],
	}
}

func asciiOnly(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			b.WriteRune(r)
		case r == 'É' || r == 'é':
			b.WriteByte('e')
		case r == 'ø':
			b.WriteByte('o')
		case r == 'ñ':
			b.WriteByte('n')
		}
	}
	return b.String()
}

func pad2(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

func pad4(n int) string {
	s := strconv.Itoa(n)
	return strings.Repeat("0", 4-len(s)) + s
}

// renderUser appends the UserResource of one row.
func renderUser(e *enc, c *customer, id int64, r *row, detail bool) {
	f := c.userFields(id, r)
	e.open("", '{')
	e.str("type", "user")
	e.id("id", id)
	e.str("first_name", f.first)
	e.str("last_name", f.last)
	e.str("full_name", f.first+" "+f.last)
	e.str("email", f.email)
	e.str("address", f.address)
	e.str("phone", f.phone)
	e.str("birthday", f.birthday)
	e.str("gender", f.gender)
	e.time("updated_at", r.updated)
	e.time("created_at", r.created)
	e.str("user_status", f.status)
	if r.flags&flagLeft != 0 {
		e.str("membership_status", "REMOVED")
	} else {
		e.str("membership_status", "ACCEPTED")
	}
	e.str("membership_role", f.role)
	if detail {
		// Participations and certificates change with aux, never with
		// updated_at (the documented caveat).
		e.open("participations", '[')
		for k := range int(r.aux % 5) {
			h := hash3(c.seed, id*8+int64(k), r.aux)
			if p := c.pick(Projects, h); p != 0 {
				t := c.tables[Projects]
				starts := t.rows[p-t.base].created + int64(h%(30*86400))
				renderParticipation(e, c, id, p, dateIDBase+(p-t.base)*16, starts, h)
			}
		}
		e.close(']')
		e.open("certificates", '[')
		for k := range int(r.aux/5) % 3 {
			h := hash3(c.seed, id*8+int64(k), 1<<20)
			if cert := c.pick(Certificates, h); cert != 0 {
				e.open("", '{')
				e.id("certificate_id", cert)
				e.time("earned_at", r.created+int64(h%(365*86400)))
				e.close('}')
			}
		}
		e.close(']')
		e.open("profile_field_values", '[')
		e.open("", '{')
		e.str("field", "t_shirt_size")
		e.str("value", [...]string{"S", "M", "L", "XL"}[hash3(c.seed, id, r.aux)%4])
		e.close('}')
		e.close(']')
	}
	e.close('}')
}
