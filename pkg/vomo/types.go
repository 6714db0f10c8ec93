package vomo

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Typed resources as documented. Every id, integer, boolean and timestamp
// uses the tolerant types (ID, Int, Bool, Time); unknown fields are ignored
// and enums are plain strings, since VOMO declares none.

// User is a UserResource; Participations, Certificates and
// ProfileFieldValues come only with the detail (GET /users/{id}).
type User struct {
	Type               string            `json:"type"`
	ID                 ID                `json:"id"`
	FirstName          string            `json:"first_name"`
	LastName           string            `json:"last_name"`
	FullName           string            `json:"full_name"`
	Email              string            `json:"email"`
	Address            string            `json:"address"`
	Phone              string            `json:"phone"`
	Birthday           string            `json:"birthday"`
	Gender             string            `json:"gender"`
	UserStatus         string            `json:"user_status"`
	MembershipStatus   string            `json:"membership_status"`
	MembershipRole     string            `json:"membership_role"`
	CreatedAt          Time              `json:"created_at"`
	UpdatedAt          Time              `json:"updated_at"`
	Participations     []Participation   `json:"participations,omitempty"`
	ProfileFieldValues []json.RawMessage `json:"profile_field_values,omitempty"`
}

// Participation is embedded in user detail and project-date participants.
type Participation struct {
	UserID        ID     `json:"user_id"`
	ProjectID     ID     `json:"project_id"`
	ProjectDateID ID     `json:"project_date_id"`
	SignedUpAt    Time   `json:"signed_up_at"`
	CheckedInAt   Time   `json:"checked_in_at"`
	CheckedOutAt  Time   `json:"checked_out_at"`
	Hours         Number `json:"hours"`
	Verified      Bool   `json:"verified"`
	Role          string `json:"role"`
	Guests        Int    `json:"guests"`
}

// Project is a ProjectResource; AllDates comes with the detail.
type Project struct {
	Type             string        `json:"type"`
	ID               ID            `json:"id"`
	Name             string        `json:"name"`
	Description      string        `json:"description"`
	URL              string        `json:"url"`
	OrganizationID   ID            `json:"organization_id"`
	Organization     string        `json:"organization"`
	OrganizationSlug string        `json:"organization_slug"`
	Anytime          Bool          `json:"anytime"`
	Draft            Bool          `json:"draft"`
	Privacy          string        `json:"privacy"`
	AgeLimit         Int           `json:"age_limit"`
	AllowGuests      Bool          `json:"allow_guests"`
	CreatedAt        Time          `json:"created_at"`
	UpdatedAt        Time          `json:"updated_at"`
	PublishedAt      Time          `json:"published_at"`
	NextDate         *ProjectDate  `json:"next_date"`
	AllDates         []ProjectDate `json:"all_dates,omitempty"`
}

// ProjectDate is one occurrence of a project ("happening").
type ProjectDate struct {
	Type         string          `json:"type"`
	ID           ID              `json:"id"`
	ProjectID    ID              `json:"project_id"`
	ProjectName  string          `json:"project_name,omitempty"`
	StartsAt     Time            `json:"starts_at"`
	EndsAt       Time            `json:"ends_at"`
	Participants []Participation `json:"participants,omitempty"`
}

// Group is a GroupResource.
type Group struct {
	ID           ID     `json:"id"`
	Name         string `json:"name"`
	Description  string `json:"description"`
	HasSubgroups Bool   `json:"has_subgroups"`
	ParentID     ID     `json:"parent_id"`
	CreatedAt    Time   `json:"created_at"`
	UpdatedAt    Time   `json:"updated_at"`
}

// Campaign (an "Initiative" in the product UI).
type Campaign struct {
	Type             string `json:"type"`
	ID               ID     `json:"id"`
	CampaignName     string `json:"campaign_name"`
	Description      string `json:"description"`
	URL              string `json:"url"`
	Organization     string `json:"organization"`
	OrganizationSlug string `json:"organization_slug"`
	AuthorID         ID     `json:"author_id"`
	LogoURL          string `json:"logo_url"`
	CreatedAt        Time   `json:"created_at"`
	UpdatedAt        Time   `json:"updated_at"`
}

// Certificate is a certificate definition (who earned it is not listed).
type Certificate struct {
	ID          ID     `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	CreatedAt   Time   `json:"created_at"`
	UpdatedAt   Time   `json:"updated_at"`
}

// FormCompletion is one completion of a form.
type FormCompletion struct {
	Type            string          `json:"type"`
	ID              ID              `json:"id"`
	FormID          ID              `json:"form_id"`
	UserID          ID              `json:"user_id"`
	ProjectID       ID              `json:"project_id"`
	ParticipationID ID              `json:"participation_id"`
	FieldResponses  []FieldResponse `json:"field_responses"`
	CreatedAt       Time            `json:"created_at"`
	UpdatedAt       Time            `json:"updated_at"`
}

// FieldResponse is one answer of a form completion.
type FieldResponse struct {
	ID               ID     `json:"id"`
	FormCompletionID ID     `json:"form_completion_id"`
	UserID           ID     `json:"user_id"`
	FieldID          ID     `json:"field_id"`
	Value            string `json:"value"`
}

// Organization is one organization of a family; DeletedAt is zero unless
// it was soft-deleted.
type Organization struct {
	ID              ID     `json:"id"`
	Name            string `json:"name"`
	Slug            string `json:"slug"`
	Type            string `json:"type"`
	Description     string `json:"description"`
	Email           string `json:"email"`
	Phone           string `json:"phone"`
	ParentID        ID     `json:"parent_id"`
	GroupsMoniker   string `json:"groups_moniker"`
	ProjectMoniker  string `json:"project_moniker"`
	CampaignMoniker string `json:"campaign_moniker"`
	CreatedAt       Time   `json:"created_at"`
	UpdatedAt       Time   `json:"updated_at"`
	DeletedAt       Time   `json:"deleted_at"`
}

// Number is a decimal sent as a JSON number or a string ("10.00"); null is 0.
type Number float64

// UnmarshalJSON accepts 2.5, "2.5" and null.
func (n *Number) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		*n = 0
		return nil
	}
	if len(s) >= 2 && s[0] == '"' {
		s = s[1 : len(s)-1]
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("want a number, got %.20q", b)
	}
	*n = Number(f)
	return nil
}

// Decode unmarshals a record's raw JSON into one of the typed resources,
// e.g. vomo.Decode[vomo.User](rec.Raw).
func Decode[T any](raw json.RawMessage) (T, error) {
	var v T
	if tooDeep(raw, MaxDepth) {
		return v, fmt.Errorf("vomo: decode %T: %w", v, ErrTooDeep)
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("vomo: decode %T: %w", v, err)
	}
	return v, nil
}
