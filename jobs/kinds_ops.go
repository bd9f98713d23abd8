package jobs

import (
	"encoding/json"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/internal/clip"
	"github.com/verifiedfan/export-service/jobs/encode"
)

// OpsCollection is a collection the collection_fields kind may export and the only fields of it
// that may leave the database that way. Personal data (e-mail, names, phone, postal code) and
// secrets (access codes themselves) are never listed: ops exports are for counting and
// reconciling, the partner kinds carry personal data under their own contracts.
type OpsCollection struct {
	Name string
	// CampaignField holds the campaign id a campaign_id parameter selects by ("" if the
	// collection has none). Every kind's indexes together hold {CampaignField: 1, _id: 1} for
	// it (a test checks), so the query streams in _id order from an index.
	CampaignField string
	// Fields are the dotted paths that may be exported, in their default order.
	Fields []string
}

var opsCollections = []OpsCollection{
	{Name: "access_codes", CampaignField: "campaign_id", Fields: []string{
		"_id", "campaign_id", "event_id", "tier", "status", "registration_id", "assigned_at", "expires_at"}},
	{Name: "campaigns", CampaignField: "_id", Fields: []string{
		"_id", "name", "artist", "status", "markets", "starts_at", "ends_at", "presale_starts_at", "created_at", "updated_at"}},
	{Name: "registrations", CampaignField: "campaign_id", Fields: []string{
		"_id", "campaign_id", "status", "marketing_opt_in", "score", "tags", "source", "fan.country", "fan.locale", "created_at", "updated_at"}},
	{Name: "venues", Fields: []string{
		"_id", "name", "city", "country", "capacity", "timezone"}},
}

// OpsCollections returns the collections (sorted by name) the collection_fields kind may export.
func OpsCollections() []OpsCollection {
	out := make([]OpsCollection, len(opsCollections))
	for i, c := range opsCollections {
		c.Fields = slices.Clone(c.Fields)
		out[i] = c
	}
	return out
}

func opsCollection(name string) (OpsCollection, bool) {
	i := slices.IndexFunc(opsCollections, func(c OpsCollection) bool { return c.Name == name })
	if i < 0 {
		return OpsCollection{}, false
	}
	return opsCollections[i], true
}

// CollectionFieldsParams are the parameters of the collection_fields kind.
type CollectionFieldsParams struct {
	Collection string `json:"collection"`
	// Fields are the exported fields in column order; default all the collection's allowed ones.
	Fields []string `json:"fields,omitempty"`
	// CampaignID selects the documents of one campaign (collections with a campaign field only).
	CampaignID string `json:"campaign_id,omitempty"`
}

// CollectionFieldsKind exports allowlisted fields of an allowlisted collection, for ops: all of
// it, or one campaign's documents. Column headers are the field paths.
func CollectionFieldsKind() *Kind {
	names := make([]string, len(opsCollections))
	for i, c := range opsCollections {
		names[i] = c.Name
	}
	return &Kind{
		Name:        "collection_fields",
		Description: "allowlisted fields of an allowlisted collection (" + strings.Join(names, ", ") + "), optionally of one campaign (ops)",
		// The message names the collection; its indexes are declared by the kinds of that
		// collection (see OpsCollection.CampaignField).
		Collection: "",
		Formats:    []encode.Format{encode.FormatCSV, encode.FormatNDJSON},
		plan: func(raw json.RawMessage) (*Plan, error) {
			o, err := parseParams(raw, "collection", "fields", "campaign_id")
			if err != nil {
				return nil, err
			}
			var p CollectionFieldsParams
			coll, known := OpsCollection{}, false
			if name, ok := o.string("collection"); ok {
				p.Collection = name
				if coll, known = opsCollection(name); !known {
					o.invalidf("collection", "%q is not one of %s", clip.String(name, 40), strings.Join(names, ", "))
				}
			} else if !o.has("collection") {
				o.invalidf("collection", "required")
			}
			if fields, ok := o.strings("fields"); ok {
				p.Fields = fields
				if len(fields) == 0 {
					o.invalidf("fields", "must name at least one field (leave it out for all)")
				}
				for i, f := range fields {
					switch {
					case slices.Index(fields, f) < i:
						o.invalidf("fields", "%q is named twice", clip.String(f, 40))
					case known && !slices.Contains(coll.Fields, f):
						o.invalidf("fields", "%q is not an exportable field of %s (allowed: %s)", clip.String(f, 40), coll.Name, strings.Join(coll.Fields, ", "))
					}
				}
			}
			if o.has("campaign_id") {
				p.CampaignID = paramCampaignID(o, false)
				if known && coll.CampaignField == "" {
					o.invalidf("campaign_id", "collection %s has no campaign", coll.Name)
				}
			}
			if err := paramsErr(o); err != nil {
				return nil, err
			}
			if p.Fields == nil {
				p.Fields = slices.Clone(coll.Fields)
			}
			cols := make([]encode.Column, len(p.Fields))
			for i, f := range p.Fields {
				cols[i] = encode.Column{Header: f, Path: f}
			}
			filter := bson.D{}
			if p.CampaignID != "" {
				filter = bson.D{{Key: coll.CampaignField, Value: p.CampaignID}}
			}
			return &Plan{Collection: coll.Name, Filter: filter, Columns: cols, Params: p,
				Vars: map[string]string{"campaign": p.CampaignID, "collection": coll.Name}}, nil
		},
	}
}
