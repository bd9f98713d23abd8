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
)

// Kind is one thing that can be exported: which collection, which parameters a message may
// give, the filter built from them (no query operator ever comes from a message), the columns,
// the formats and the indexes its query needs.
type Kind struct {
	Name        string
	Description string
	Collection  string
	Formats     []Format
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
	Columns    []Column
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
	return NewRegistry(RegistrationsKind(), AccessCodesKind())
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
		return nil, Permanentf("unknown_kind", `field "kind": unknown kind %q (known: %s)`, m.Kind, strings.Join(names, ", "))
	}
	if !slices.Contains(k.Formats, m.Format) {
		return nil, Permanentf("invalid_message", `field "format": kind %q cannot be written as %q`, k.Name, m.Format)
	}
	p, err := k.plan(m.Params)
	if err != nil {
		return nil, Permanent("invalid_params", fmt.Errorf("kind %q: %w", k.Name, err))
	}
	p.Kind = k
	p.Collection = k.Collection
	p.Sort = bson.D{{Key: "_id", Value: 1}}
	p.Projection = projection(p.Columns)
	return p, nil
}

func projection(cols []Column) bson.D {
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

// decodeParams decodes a kind's parameters strictly, naming fields as "params.<name>".
func decodeParams(raw json.RawMessage, v any) error {
	if err := decodeStrict(raw, v); err != nil {
		return fmt.Errorf("params: %w", err)
	}
	return nil
}

var (
	campaignIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	errRequired       = errors.New("required")
)

func checkCampaignID(id string) error {
	if id == "" {
		return fmt.Errorf(`field "params.campaign_id": %w`, errRequired)
	}
	if !campaignIDPattern.MatchString(id) {
		return fmt.Errorf(`field "params.campaign_id": %q must be 1-64 characters of A-Z a-z 0-9 _ -`, truncate(id, 40))
	}
	return nil
}

func checkEnum(field, v string, allowed ...string) error {
	if v == "" || slices.Contains(allowed, v) {
		return nil
	}
	return fmt.Errorf(`field "params.%s": %q is not one of %s`, field, truncate(v, 40), strings.Join(allowed, ", "))
}

// RegistrationParams are the parameters of the registrations kind.
type RegistrationParams struct {
	CampaignID  string     `json:"campaign_id"`
	Status      string     `json:"status,omitempty"`
	CreatedFrom *time.Time `json:"created_from,omitempty"`
	CreatedTo   *time.Time `json:"created_to,omitempty"`
}

// RegistrationStatuses are the statuses a registration can have.
var RegistrationStatuses = []string{"registered", "verified", "selected", "waitlisted", "cancelled"}

// RegistrationsKind exports a campaign's fan registrations (for SFMC e-mailing).
func RegistrationsKind() *Kind {
	cols := []Column{
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
		Description: "fan registrations of one campaign, optionally by status and creation time (SFMC e-mailing)",
		Collection:  "registrations",
		Formats:     []Format{FormatCSV, FormatNDJSON},
		Indexes: []Index{
			{Name: "campaign_id_1__id_1", Keys: []string{"campaign_id", "_id"}},
			{Name: "campaign_id_1_status_1__id_1", Keys: []string{"campaign_id", "status", "_id"}},
		},
		plan: func(raw json.RawMessage) (*Plan, error) {
			var p RegistrationParams
			if err := decodeParams(raw, &p); err != nil {
				return nil, err
			}
			errs := []error{checkCampaignID(p.CampaignID), checkEnum("status", p.Status, RegistrationStatuses...)}
			if p.CreatedFrom != nil && p.CreatedTo != nil && !p.CreatedFrom.Before(*p.CreatedTo) {
				errs = append(errs, errors.New(`field "params.created_to": must be after params.created_from`))
			}
			if err := errors.Join(errs...); err != nil {
				return nil, err
			}
			filter := bson.D{{Key: "campaign_id", Value: p.CampaignID}}
			if p.Status != "" {
				filter = append(filter, bson.E{Key: "status", Value: p.Status})
			}
			if p.CreatedFrom != nil || p.CreatedTo != nil {
				rng := bson.D{}
				if p.CreatedFrom != nil {
					rng = append(rng, bson.E{Key: "$gte", Value: p.CreatedFrom.UTC()})
				}
				if p.CreatedTo != nil {
					rng = append(rng, bson.E{Key: "$lt", Value: p.CreatedTo.UTC()})
				}
				filter = append(filter, bson.E{Key: "created_at", Value: rng})
			}
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
}

// AccessCodeStatuses are the states an access code can be in.
var AccessCodeStatuses = []string{"available", "assigned", "redeemed", "revoked"}

var tierPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// AccessCodesKind exports the presale access codes of a campaign (for TMOL presales).
func AccessCodesKind() *Kind {
	cols := []Column{
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
		Description: "presale access codes of one campaign by status (default assigned), optionally of one tier (TMOL presales)",
		Collection:  "access_codes",
		Formats:     []Format{FormatCSV, FormatNDJSON},
		Indexes: []Index{
			{Name: "campaign_id_1_status_1__id_1", Keys: []string{"campaign_id", "status", "_id"}},
		},
		plan: func(raw json.RawMessage) (*Plan, error) {
			var p AccessCodeParams
			if err := decodeParams(raw, &p); err != nil {
				return nil, err
			}
			if p.Status == "" {
				p.Status = "assigned"
			}
			errs := []error{checkCampaignID(p.CampaignID), checkEnum("status", p.Status, AccessCodeStatuses...)}
			if p.Tier != "" && !tierPattern.MatchString(p.Tier) {
				errs = append(errs, fmt.Errorf(`field "params.tier": %q must be 1-32 characters of A-Z a-z 0-9 _ -`, truncate(p.Tier, 40)))
			}
			if err := errors.Join(errs...); err != nil {
				return nil, err
			}
			filter := bson.D{{Key: "campaign_id", Value: p.CampaignID}, {Key: "status", Value: p.Status}}
			if p.Tier != "" {
				filter = append(filter, bson.E{Key: "tier", Value: p.Tier})
			}
			return &Plan{Filter: filter, Columns: cols, Params: p, Vars: map[string]string{"campaign": p.CampaignID}}, nil
		},
	}
}
