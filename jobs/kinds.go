package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/internal/clip"
	"github.com/verifiedfan/export-service/jobs/encode"
)

// Kind is one thing that can be exported: which collection, which parameters a message may
// give, the filter built from them (no query operator ever comes from a message), the columns,
// the formats and the indexes its query needs.
type Kind struct {
	Name        string
	Description string
	// Collection is the collection the kind queries; empty when the message names it
	// (collection_fields).
	Collection string
	Formats    []encode.Format
	// Indexes are the indexes the kind's queries need; `export-service indexes` creates them.
	Indexes []Index
	// plan decodes the kind's parameters strictly and builds the query.
	plan func(params json.RawMessage) (*Plan, error)
}

// Index is one index a kind needs, keys in order, all ascending.
type Index struct {
	Name string
	Keys []string
}

// Plan is a validated, ready-to-run export: the query and the columns.
type Plan struct {
	Kind       *Kind
	Collection string
	Filter     bson.D
	// Sort is always by _id so a cursor streams in a stable order served by an index.
	Sort       bson.D
	Projection bson.D
	Columns    []encode.Column
	// Params are the typed, validated parameters (for the manifest and the ledger).
	Params any
	// Vars are the values object key templates may use (already sanitized).
	Vars map[string]string
}

// Registry holds the export kinds by name.
type Registry struct {
	kinds map[string]*Kind
}

// NewRegistry returns a registry of the given kinds.
func NewRegistry(kinds ...*Kind) *Registry {
	r := &Registry{kinds: make(map[string]*Kind, len(kinds))}
	for _, k := range kinds {
		r.kinds[k.Name] = k
	}
	return r
}

// DefaultRegistry returns the built-in kinds.
func DefaultRegistry() *Registry {
	return NewRegistry(RegistrationsKind(), AccessCodesKind(), CollectionFieldsKind())
}

// Kinds returns the kinds sorted by name.
func (r *Registry) Kinds() []*Kind {
	out := make([]*Kind, 0, len(r.kinds))
	for _, k := range r.kinds {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Plan resolves a decoded message into a query plan. Every problem is a permanent error.
func (r *Registry) Plan(m Message) (*Plan, error) {
	k, ok := r.kinds[m.Kind]
	if !ok {
		names := make([]string, 0, len(r.kinds))
		for _, k := range r.Kinds() {
			names = append(names, k.Name)
		}
		return nil, Permanentf(ReasonUnknownKind, `field "kind": unknown kind %q (known: %s)`, m.Kind, strings.Join(names, ", "))
	}
	if !slices.Contains(k.Formats, m.Format) {
		return nil, Permanentf(ReasonInvalidMessage, `field "format": kind %q cannot be written as %q`, k.Name, m.Format)
	}
	p, err := k.plan(m.Params)
	if err != nil {
		return nil, Permanent(ReasonInvalidParams, fmt.Errorf("kind %q: %w", k.Name, err))
	}
	p.Kind = k
	if p.Collection == "" {
		p.Collection = k.Collection
	}
	p.Sort = bson.D{{Key: "_id", Value: 1}}
	p.Projection = projection(p.Columns)
	return p, nil
}

func projection(cols []encode.Column) bson.D {
	seen := map[string]bool{}
	var d bson.D
	for _, c := range cols {
		if !seen[c.Path] {
			seen[c.Path] = true
			d = append(d, bson.E{Key: c.Path, Value: 1})
		}
	}
	return d
}

// parseParams parses a kind's parameters strictly: only the allowed keys, exact names, fields
// named "params.<name>" in errors.
func parseParams(raw json.RawMessage, allowed ...string) (*jsonObject, error) {
	return parseJSONObject(raw, "params", allowed...)
}

// paramsErr joins the problems parseParams and the kind's checks found, or returns nil.
func paramsErr(o *jsonObject, more ...error) error {
	errs := append(append(append([]error{}, o.shape...), o.invalid...), more...)
	return errors.Join(errs...)
}

var (
	campaignIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	// timestampPattern is the RFC 3339 date-time the parameters accept: upper-case T and Z,
	// seconds required, at most nanoseconds. The schema has the same pattern.
	timestampPattern = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`)
)

// The years a timestamp parameter may name (as written, before conversion to UTC). Anything
// else is a typo (0026, 20266) that would silently export nothing or everything.
const (
	MinParamYear = 2000
	MaxParamYear = 2099
)

// paramCampaignID reads params.campaign_id; required reports a missing one.
func paramCampaignID(o *jsonObject, required bool) string {
	id, ok := o.string("campaign_id")
	switch {
	case !ok && !o.has("campaign_id") && required:
		o.invalidf("campaign_id", "required")
	case ok && !campaignIDPattern.MatchString(id):
		o.invalidf("campaign_id", "%q must be 1-64 characters of A-Z a-z 0-9 _ - starting with a letter or digit", clip.String(id, 40))
	}
	return id
}

// paramEnum reads an optional string parameter that must be one of allowed.
func paramEnum(o *jsonObject, k string, allowed ...string) string {
	v, ok := o.string(k)
	if ok && !slices.Contains(allowed, v) {
		o.invalidf(k, "%q is not one of %s", clip.String(v, 40), strings.Join(allowed, ", "))
	}
	return v
}

// paramTime reads an optional RFC 3339 parameter within MinParamYear..MaxParamYear.
func paramTime(o *jsonObject, k string) *time.Time {
	s, ok := o.string(k)
	if !ok {
		return nil
	}
	var t time.Time
	if !timestampPattern.MatchString(s) || t.UnmarshalText([]byte(s)) != nil {
		o.invalidf(k, "%q is not an RFC 3339 date-time such as 2026-11-26T09:00:00Z", clip.String(s, 40))
		return nil
	}
	if t.Year() < MinParamYear || t.Year() > MaxParamYear {
		o.invalidf(k, "%q is outside the years %d-%d", s, MinParamYear, MaxParamYear)
		return nil
	}
	return &t
}

// paramWindow reads the optional half-open window [prefix_from, prefix_to) of RFC 3339
// parameters and reports prefix_to not after prefix_from.
func paramWindow(o *jsonObject, prefix string) (from, to *time.Time) {
	from, to = paramTime(o, prefix+"_from"), paramTime(o, prefix+"_to")
	if from != nil && to != nil && !from.Before(*to) {
		o.invalidf(prefix+"_to", "must be after params.%s_from", prefix)
	}
	return from, to
}

// windowFilter appends to filter the condition from <= field < to (either bound optional; a
// document without the field matches no bound).
func windowFilter(filter bson.D, field string, from, to *time.Time) bson.D {
	if from == nil && to == nil {
		return filter
	}
	rng := bson.D{}
	if from != nil {
		rng = append(rng, bson.E{Key: "$gte", Value: from.UTC()})
	}
	if to != nil {
		rng = append(rng, bson.E{Key: "$lt", Value: to.UTC()})
	}
	return append(filter, bson.E{Key: field, Value: rng})
}

// RegistrationParams are the parameters of the registrations kind.
type RegistrationParams struct {
	CampaignID  string     `json:"campaign_id"`
	Status      string     `json:"status,omitempty"`
	CreatedFrom *time.Time `json:"created_from,omitempty"`
	CreatedTo   *time.Time `json:"created_to,omitempty"`
	// UpdatedFrom and UpdatedTo select a delta: the registrations whose updated_at is in
	// [UpdatedFrom, UpdatedTo).
	UpdatedFrom *time.Time `json:"updated_from,omitempty"`
	UpdatedTo   *time.Time `json:"updated_to,omitempty"`
}

// RegistrationStatuses are the statuses a registration can have.
var RegistrationStatuses = []string{"registered", "verified", "selected", "waitlisted", "cancelled"}

// RegistrationsKind exports a campaign's fan registrations (for SFMC e-mailing).
func RegistrationsKind() *Kind {
	cols := []encode.Column{
		{Header: "registration_id", Path: "_id"},
		{Header: "campaign_id", Path: "campaign_id"},
		{Header: "email", Path: "fan.email"},
		{Header: "first_name", Path: "fan.first_name"},
		{Header: "last_name", Path: "fan.last_name"},
		{Header: "phone", Path: "fan.phone"},
		{Header: "postal_code", Path: "fan.postal_code"},
		{Header: "country", Path: "fan.country"},
		{Header: "locale", Path: "fan.locale"},
		{Header: "status", Path: "status"},
		{Header: "marketing_opt_in", Path: "marketing_opt_in"},
		{Header: "score", Path: "score"},
		{Header: "tags", Path: "tags"},
		{Header: "created_at", Path: "created_at"},
	}
	return &Kind{
		Name:        "registrations",
		Description: "fan registrations of one campaign, optionally by status, creation time and update time (SFMC e-mailing)",
		Collection:  "registrations",
		Formats:     []encode.Format{encode.FormatCSV, encode.FormatNDJSON},
		Indexes: []Index{
			{Name: "campaign_id_1__id_1", Keys: []string{"campaign_id", "_id"}},
			{Name: "campaign_id_1_status_1__id_1", Keys: []string{"campaign_id", "status", "_id"}},
			// Delta exports (updated_from/updated_to): the window is a range of this index, so a
			// delta reads only its own documents, then the server sorts them by _id. For a window
			// holding most of a campaign, the planner takes the {campaign_id, _id} index instead
			// (no sort, the window checked on each document).
			{Name: "campaign_id_1_updated_at_1__id_1", Keys: []string{"campaign_id", "updated_at", "_id"}},
		},
		plan: func(raw json.RawMessage) (*Plan, error) {
			o, err := parseParams(raw, "campaign_id", "status", "created_from", "created_to", "updated_from", "updated_to")
			if err != nil {
				return nil, err
			}
			p := RegistrationParams{
				CampaignID: paramCampaignID(o, true),
				Status:     paramEnum(o, "status", RegistrationStatuses...),
			}
			p.CreatedFrom, p.CreatedTo = paramWindow(o, "created")
			p.UpdatedFrom, p.UpdatedTo = paramWindow(o, "updated")
			if err := paramsErr(o); err != nil {
				return nil, err
			}
			filter := bson.D{{Key: "campaign_id", Value: p.CampaignID}}
			if p.Status != "" {
				filter = append(filter, bson.E{Key: "status", Value: p.Status})
			}
			filter = windowFilter(filter, "created_at", p.CreatedFrom, p.CreatedTo)
			filter = windowFilter(filter, "updated_at", p.UpdatedFrom, p.UpdatedTo)
			return &Plan{Filter: filter, Columns: cols, Params: p, Vars: map[string]string{"campaign": p.CampaignID}}, nil
		},
	}
}

// AccessCodeParams are the parameters of the access_codes kind.
type AccessCodeParams struct {
	CampaignID string `json:"campaign_id"`
	// Status selects codes by state; default "assigned".
	Status string `json:"status,omitempty"`
	Tier   string `json:"tier,omitempty"`
	// UpdatedFrom and UpdatedTo select a delta: the codes whose updated_at is in
	// [UpdatedFrom, UpdatedTo).
	UpdatedFrom *time.Time `json:"updated_from,omitempty"`
	UpdatedTo   *time.Time `json:"updated_to,omitempty"`
}

// AccessCodeStatuses are the states an access code can be in.
var AccessCodeStatuses = []string{"available", "assigned", "redeemed", "revoked"}

var tierPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// AccessCodesKind exports the presale access codes of a campaign (for TMOL presales).
func AccessCodesKind() *Kind {
	cols := []encode.Column{
		{Header: "code", Path: "code"},
		{Header: "campaign_id", Path: "campaign_id"},
		{Header: "event_id", Path: "event_id"},
		{Header: "tier", Path: "tier"},
		{Header: "status", Path: "status"},
		{Header: "registration_id", Path: "registration_id"},
		{Header: "email", Path: "email"},
		{Header: "assigned_at", Path: "assigned_at"},
		{Header: "expires_at", Path: "expires_at"},
	}
	return &Kind{
		Name:        "access_codes",
		Description: "presale access codes of one campaign by status (default assigned), optionally of one tier and by update time (TMOL presales)",
		Collection:  "access_codes",
		Formats:     []encode.Format{encode.FormatCSV, encode.FormatNDJSON},
		Indexes: []Index{
			{Name: "campaign_id_1_status_1__id_1", Keys: []string{"campaign_id", "status", "_id"}},
			// collection_fields on access_codes of one campaign, any status.
			{Name: "campaign_id_1__id_1", Keys: []string{"campaign_id", "_id"}},
			// Delta exports (updated_from/updated_to; the query always has a status): the window
			// is a range of this index, then the server sorts the delta by _id. For a window
			// holding most of the codes, the planner takes {campaign_id, status, _id} instead.
			{Name: "campaign_id_1_status_1_updated_at_1__id_1", Keys: []string{"campaign_id", "status", "updated_at", "_id"}},
		},
		plan: func(raw json.RawMessage) (*Plan, error) {
			o, err := parseParams(raw, "campaign_id", "status", "tier", "updated_from", "updated_to")
			if err != nil {
				return nil, err
			}
			p := AccessCodeParams{
				CampaignID: paramCampaignID(o, true),
				Status:     paramEnum(o, "status", AccessCodeStatuses...),
			}
			if p.Status == "" {
				p.Status = "assigned"
			}
			if tier, ok := o.string("tier"); ok {
				p.Tier = tier
				if !tierPattern.MatchString(tier) {
					o.invalidf("tier", "%q must be 1-32 characters of A-Z a-z 0-9 _ -", clip.String(tier, 40))
				}
			}
			p.UpdatedFrom, p.UpdatedTo = paramWindow(o, "updated")
			if err := paramsErr(o); err != nil {
				return nil, err
			}
			filter := bson.D{{Key: "campaign_id", Value: p.CampaignID}, {Key: "status", Value: p.Status}}
			if p.Tier != "" {
				filter = append(filter, bson.E{Key: "tier", Value: p.Tier})
			}
			filter = windowFilter(filter, "updated_at", p.UpdatedFrom, p.UpdatedTo)
			return &Plan{Filter: filter, Columns: cols, Params: p, Vars: map[string]string{"campaign": p.CampaignID}}, nil
		},
	}
}
