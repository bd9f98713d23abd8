package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/fixtures"
)

// The campaign's data set. FerretDB (SQLite) scans a whole collection for every query, however
// few documents match (about 5-7k documents/s here), so an export costs what its collection
// holds, not what it returns. The data is laid out so that most exports are cheap and a few are
// big (see sizes in docs/CHAOS.md):
//
//	registrations  one campaign, xlCampaign, of -xl-rows registrations (default 50,000): the
//	               big exports (whole campaign, by status, by a created_at window).
//	access_codes   campaigns acCampaigns[i] of acSizes[i] codes (0 to 6,000): the empty, small
//	               and medium exports (by status, by tier).
//	venues         150 venues (collection_fields): the tiny exports.
//	campaigns      -big-rows campaigns (default 12,000) whose name, artist and markets hold
//	               about 3.5 KB of random text that gzip barely compresses: the multi-part
//	               exports (collection_fields of the whole collection, always with markets:
//	               22-45 MB of text, 3-6 parts of 5 MiB), the ones that checkpoint and resume.
//	               Few documents, so a scan stays cheap; a collection of their own, so the
//	               other exports' scans do not grow. Their _ids are int64 numbers, then
//	               strings, then ObjectIDs (the BSON sort order), so that resumes cross types.
const xlCampaign = "chaos-xl"

var (
	acCampaigns = []string{"chaos-ac-0", "chaos-ac-1", "chaos-ac-2", "chaos-ac-3", "chaos-ac-4"}
	acSizes     = []int{0, 150, 900, 2500, 6000}
	acStatuses  = []string{"assigned", "assigned", "assigned", "assigned", "available", "redeemed", "revoked"}
	acTiers     = []string{"ga", "ga", "ga", "floor", "vip"}
	numVenues   = 150
	// fixtures.Generate's registrations are created in the 30 days from this date.
	regBase = time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
)

// Column is an export column: its header and the document path it reads.
type Column struct{ Header, Path string }

// The columns of each kind, as README.md documents them.
var (
	registrationColumns = []Column{
		{"registration_id", "_id"}, {"campaign_id", "campaign_id"}, {"email", "fan.email"},
		{"first_name", "fan.first_name"}, {"last_name", "fan.last_name"}, {"phone", "fan.phone"},
		{"postal_code", "fan.postal_code"}, {"country", "fan.country"}, {"locale", "fan.locale"},
		{"status", "status"}, {"marketing_opt_in", "marketing_opt_in"}, {"score", "score"},
		{"tags", "tags"}, {"created_at", "created_at"},
	}
	accessCodeColumns = []Column{
		{"code", "code"}, {"campaign_id", "campaign_id"}, {"event_id", "event_id"}, {"tier", "tier"},
		{"status", "status"}, {"registration_id", "registration_id"}, {"email", "email"},
		{"assigned_at", "assigned_at"}, {"expires_at", "expires_at"},
	}
	venueFields      = []string{"_id", "name", "city", "country", "capacity", "timezone"}
	campaignFields   = []string{"_id", "name", "artist", "status", "markets", "starts_at", "ends_at", "presale_starts_at", "created_at", "updated_at"}
	accessCodeFields = []string{"_id", "campaign_id", "event_id", "tier", "status", "registration_id", "assigned_at", "expires_at"}
)

// Job is one export the campaign asks for, with what the checker needs to verify it
// independently of the service: the collection, filter and columns of its rows.
type Job struct {
	Index       int
	ExportID    string
	Kind        string
	Params      map[string]any
	Format      string // csv or ndjson
	Delimiter   string // csv
	BOM         bool   // csv
	Mode        string // ndjson: plain or relaxed_extjson
	Destination string
	SendAt      time.Duration // after the campaign's start

	Collection string
	Filter     bson.D
	Columns    []Column

	// Cancel is when the campaign cancels the export (cancel.go), nil if it does not.
	Cancel *CancelPlan
}

// Body is the job message.
func (j *Job) Body() string {
	m := map[string]any{
		"version": 1, "export_id": j.ExportID, "kind": j.Kind, "format": j.Format,
		"destination": j.Destination, "params": j.Params, "requested_by": "chaos",
	}
	if j.Format == "csv" {
		m["csv"] = map[string]any{"delimiter": j.Delimiter, "bom": j.BOM}
	} else {
		m["ndjson"] = map[string]any{"mode": j.Mode}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// Describe is a one-line summary of the job.
func (j *Job) Describe() string {
	p, _ := json.Marshal(j.Params)
	opts := j.Mode
	if j.Format == "csv" {
		opts = fmt.Sprintf("delim=%q bom=%v", j.Delimiter, j.BOM)
	}
	s := fmt.Sprintf("%s %s %s(%s) -> %s", j.ExportID, j.Format, j.Kind, p, j.Destination) + " " + opts
	if j.Cancel != nil {
		s += "; " + j.Cancel.String()
	}
	return s
}

// makeJobs draws n jobs from r. Weights: 12% the big campaigns export (3-6 parts), 22%
// registrations (7k-50k rows with the default -xl-rows), 40% access codes (0-6k rows), 26%
// collection_fields of venues or access codes. A campaign of 5 exports or more has at least
// one big export (its last job, if none was drawn), so that CI's small campaign exercises
// checkpoints too.
func makeJobs(r *rand.Rand, n int, run string, sendOver time.Duration) []*Job {
	var jobs []*Job
	big := false
	for i := range n {
		j := &Job{Index: i, ExportID: fmt.Sprintf("%s-%03d", run, i)}
		x := r.IntN(100)
		if i == n-1 && n >= 5 && !big {
			x = 0
		}
		switch {
		case x < 12:
			// The whole campaigns collection, markets (the bulk of the text) and some other
			// fields, in a random order.
			big = true
			j.Kind, j.Collection, j.Filter = "collection_fields", "campaigns", bson.D{}
			perm := r.Perm(len(campaignFields))[:1+r.IntN(len(campaignFields))]
			hasMarkets := false
			var chosen []any
			for _, k := range perm {
				hasMarkets = hasMarkets || campaignFields[k] == "markets"
				chosen = append(chosen, campaignFields[k])
			}
			if !hasMarkets {
				at := r.IntN(len(chosen) + 1)
				chosen = append(chosen[:at], append([]any{"markets"}, chosen[at:]...)...)
			}
			for _, f := range chosen {
				j.Columns = append(j.Columns, Column{f.(string), f.(string)})
			}
			j.Params = map[string]any{"collection": j.Collection, "fields": chosen}
		case x < 34:
			j.Kind, j.Collection, j.Columns = "registrations", "registrations", registrationColumns
			j.Params = map[string]any{"campaign_id": xlCampaign}
			j.Filter = bson.D{{Key: "campaign_id", Value: xlCampaign}}
			switch r.IntN(5) {
			case 0: // the whole campaign
			case 1, 2:
				st := []string{"registered", "verified", "selected", "waitlisted", "cancelled"}[r.IntN(5)]
				j.Params["status"] = st
				j.Filter = append(j.Filter, bson.E{Key: "status", Value: st})
			default:
				from := regBase.Add(time.Duration(r.IntN(20*24)) * time.Hour)
				to := from.Add(time.Duration(1+r.IntN(10*24)) * time.Hour)
				j.Params["created_from"] = from.Format(time.RFC3339)
				j.Params["created_to"] = to.Format(time.RFC3339)
				j.Filter = append(j.Filter, bson.E{Key: "created_at", Value: bson.D{{Key: "$gte", Value: from}, {Key: "$lt", Value: to}}})
			}
		case x < 74:
			c := acCampaigns[r.IntN(len(acCampaigns))]
			j.Kind, j.Collection, j.Columns = "access_codes", "access_codes", accessCodeColumns
			st := "assigned"
			j.Params = map[string]any{"campaign_id": c}
			if r.IntN(3) == 0 {
				st = []string{"available", "assigned", "redeemed", "revoked"}[r.IntN(4)]
				j.Params["status"] = st
			}
			j.Filter = bson.D{{Key: "campaign_id", Value: c}, {Key: "status", Value: st}}
			if r.IntN(4) == 0 {
				tier := acTiers[r.IntN(len(acTiers))]
				j.Params["tier"] = tier
				j.Filter = append(j.Filter, bson.E{Key: "tier", Value: tier})
			}
		default:
			j.Kind = "collection_fields"
			var fields []string
			if r.IntN(2) == 0 {
				j.Collection, fields = "venues", venueFields
				j.Filter = bson.D{}
			} else {
				c := acCampaigns[1+r.IntN(len(acCampaigns)-1)]
				j.Collection, fields = "access_codes", accessCodeFields
				j.Filter = bson.D{{Key: "campaign_id", Value: c}}
			}
			// Some of the fields, at least two, in a random order.
			perm := r.Perm(len(fields))[:2+r.IntN(len(fields)-1)]
			var chosen []any
			for _, k := range perm {
				chosen = append(chosen, fields[k])
				j.Columns = append(j.Columns, Column{fields[k], fields[k]})
			}
			j.Params = map[string]any{"collection": j.Collection, "fields": chosen}
			if j.Collection == "access_codes" {
				j.Params["campaign_id"] = j.Filter[0].Value
			}
		}
		if r.IntN(2) == 0 {
			j.Format = "csv"
			j.Delimiter = []string{",", ",", ";", "\t", "|"}[r.IntN(5)]
			j.BOM = r.IntN(4) == 0
		} else {
			j.Format = "ndjson"
			j.Mode = []string{"plain", "plain", "relaxed_extjson"}[r.IntN(3)]
		}
		j.Destination = []string{"internal", "internal", "sfmc", "tmol"}[r.IntN(4)]
		j.SendAt = time.Duration(r.Int64N(int64(sendOver) + 1))
		jobs = append(jobs, j)
	}
	return jobs
}

// oid draws a deterministic ObjectID whose timestamp is t.
func oid(r *rand.Rand, t time.Time) bson.ObjectID {
	id := bson.NewObjectIDFromTimestamp(t)
	for i := 4; i < 12; i++ {
		id[i] = byte(r.IntN(256))
	}
	return id
}

// seed writes the data set into db and returns the number of documents per collection.
func seed(ctx context.Context, db *mongo.Database, seedValue uint64, xlRows, bigRows int) (map[string]int, error) {
	r := rand.New(rand.NewPCG(seedValue, 0xc4a05))
	counts := map[string]int{}
	insert := func(coll string, docs []any) error {
		for i := 0; i < len(docs); i += 2000 {
			end := min(i+2000, len(docs))
			if _, err := db.Collection(coll).InsertMany(ctx, docs[i:end], options.InsertMany().SetOrdered(false)); err != nil {
				return fmt.Errorf("seed %s: %w", coll, err)
			}
		}
		counts[coll] += len(docs)
		return nil
	}
	ds := fixtures.Generate(seedValue, []string{xlCampaign}, xlRows)
	if err := insert("registrations", ds.Registrations); err != nil {
		return nil, err
	}

	var codes []any
	for ci, c := range acCampaigns {
		for i := range acSizes[ci] {
			created := regBase.Add(time.Duration(r.IntN(30*24*3600)) * time.Second).Truncate(time.Millisecond)
			status := acStatuses[r.IntN(len(acStatuses))]
			d := bson.D{
				{Key: "_id", Value: oid(r, created)},
				{Key: "code", Value: fmt.Sprintf("%s-%05d", strings.ToUpper(c[len(c)-1:]+"X"), i)},
				{Key: "campaign_id", Value: c},
				{Key: "event_id", Value: fmt.Sprintf("evt-%d-%02d", ci, r.IntN(12))},
				{Key: "tier", Value: acTiers[r.IntN(len(acTiers))]},
				{Key: "status", Value: status},
			}
			if status != "available" {
				d = append(d,
					bson.E{Key: "registration_id", Value: oid(r, created)},
					bson.E{Key: "email", Value: fmt.Sprintf("fan.%d.%d@example.com", ci, i)},
					bson.E{Key: "assigned_at", Value: created.Add(48 * time.Hour)},
				)
			}
			d = append(d, bson.E{Key: "expires_at", Value: created.Add(14 * 24 * time.Hour)})
			codes = append(codes, d)
		}
	}
	if err := insert("access_codes", codes); err != nil {
		return nil, err
	}

	// Venue names with the characters CSV must quote: delimiters, quotes, a newline, Unicode.
	names := []string{"Arena", "Hall \"B\"", "Stadium, North", "Teatro Olímpico", "Club;Room", "Pavilion|2", "Dome\tEast", "Park\nStage", "Zénith", "O'Reilly Theatre"}
	cities := []string{"Austin", "München", "São Paulo", "Kraków", "Zürich", "Montréal"}
	zones := []string{"America/Chicago", "Europe/Berlin", "America/Sao_Paulo", "Europe/Warsaw", "Europe/Zurich", "America/Toronto"}
	var venues []any
	for i := range numVenues {
		k := r.IntN(len(cities))
		d := bson.D{
			{Key: "_id", Value: fmt.Sprintf("ven-%04d", i)},
			{Key: "name", Value: fmt.Sprintf("%s %d", names[r.IntN(len(names))], i)},
			{Key: "city", Value: cities[k]},
			{Key: "country", Value: []string{"US", "DE", "BR", "PL", "CH", "CA"}[k]},
			{Key: "timezone", Value: zones[k]},
		}
		if r.IntN(5) > 0 { // some venues have no capacity: the field is missing
			d = append(d, bson.E{Key: "capacity", Value: int32(500 + r.IntN(80000))})
		}
		venues = append(venues, d)
	}
	if err := insert("venues", venues); err != nil {
		return nil, err
	}

	// The big exports' collection: few documents of much random text (see the top of the file).
	var campaigns []any
	nNum, nStr := bigRows*5/24, bigRows*5/24
	for i := range bigRows {
		created := regBase.Add(-time.Duration(r.IntN(365*24*3600)) * time.Second).Truncate(time.Millisecond)
		var id any
		switch {
		case i < nNum:
			id = int64(1<<40 + 13*i)
		case i < nNum+nStr:
			id = fmt.Sprintf("cmp-%05d", i)
		default:
			id = oid(r, created)
		}
		var markets bson.A
		for range 3 + r.IntN(5) {
			markets = append(markets, randomText(r, marketAlphabet, 200+r.IntN(400)))
		}
		prefix := []string{"", "", "", "Tour ", "Zénith ", "=", "@", "-", "+1 ", " "}[r.IntN(10)]
		starts := created.Add(time.Duration(30+r.IntN(200)) * 24 * time.Hour)
		d := bson.D{
			{Key: "_id", Value: id},
			{Key: "name", Value: prefix + randomText(r, nameAlphabet, 600+r.IntN(800))},
			{Key: "artist", Value: randomText(r, artistAlphabet, 200+r.IntN(600))},
			{Key: "status", Value: []string{"draft", "open", "open", "closed", "archived"}[r.IntN(5)]},
			{Key: "markets", Value: markets},
			{Key: "starts_at", Value: starts},
			{Key: "ends_at", Value: starts.Add(time.Duration(1+r.IntN(90)) * 24 * time.Hour)},
		}
		if r.IntN(3) > 0 { // some campaigns have no presale: the field is missing
			d = append(d, bson.E{Key: "presale_starts_at", Value: starts.Add(-time.Duration(1+r.IntN(14)) * 24 * time.Hour)})
		}
		d = append(d, bson.E{Key: "created_at", Value: created}, bson.E{Key: "updated_at", Value: created.Add(time.Duration(r.IntN(1000)) * time.Hour)})
		campaigns = append(campaigns, d)
	}
	if err := insert("campaigns", campaigns); err != nil {
		return nil, err
	}
	return counts, nil
}

// Alphabets of 64 characters for randomText. Market names go into arrays, which a CSV cell
// writes as JSON: no character JSON escapes. Names have what CSV quotes and doubles.
const (
	marketAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -"
	nameAlphabet   = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz01234 ,;|\"'."
	artistAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789  "
)

// randomText draws n characters of a 64-character alphabet (6 bits each: gzip keeps about
// 80% of it).
func randomText(r *rand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := 0; i < n; {
		x := r.Uint64()
		for k := 0; k < 10 && i < n; k++ {
			b[i] = alphabet[x&63]
			x >>= 6
			i++
		}
	}
	return string(b)
}
