package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/verifiedfan/export-service/internal/jsontest"
	vfjobs "github.com/verifiedfan/export-service/jobs"
)

// The notice invariant: every message of the results queue is a result notice valid to
// docs/result-notice.schema.json, its attributes agree with its body, its notice_id is
// export_id:outcome:attempts, it is of an export the campaign sent, and every copy of one
// notice_id is the same body byte for byte (the outbox stores a notice once and re-sends it
// verbatim: delivery is at least once). Per export (exportNotices.check):
//
//	complete        exactly one succeeded notice, whose manifest fields (bucket, key, rows,
//	                sha256, kind, destination) are the manifest's; no cancelled, failed or
//	                dead_lettered notice
//	dead-lettered   a dead_lettered notice when the worker sent the message to the DLQ (a
//	                reason attribute; the queue's redrive policy tells the service nothing), and
//	                a failed notice when the ledger says it failed for good after running
//	cancelled       a cancelled notice (ledger "cancelled"), and no succeeded notice
//	never           a succeeded notice of an export that is not complete, a cancelled notice of
//	                one that is not cancelled, or both a succeeded and a cancelled notice

// RawNotice is one message of the results queue.
type RawNotice struct {
	Body  string
	Attrs map[string]string
}

// Notices are the results queue's notices, read and checked.
type Notices struct {
	// ByExport: export id -> notice id -> the notice (its first copy).
	ByExport map[string]map[string]vfjobs.Notice
	Messages int            // messages read
	Copies   int            // messages that repeated a notice id (identical bodies)
	Outcomes map[string]int // distinct notices by outcome
}

// readNotices decodes and validates the results queue's messages; known says which export ids
// the campaign sent.
func readNotices(schema any, msgs []RawNotice, known func(string) bool) (*Notices, []Violation) {
	var vs []Violation
	violate := func(id, format string, args ...any) {
		vs = append(vs, Violation{"notice", id, fmt.Sprintf(format, args...)})
	}
	ns := &Notices{ByExport: map[string]map[string]vfjobs.Notice{}, Outcomes: map[string]int{}, Messages: len(msgs)}
	bodies := map[string]string{} // notice id -> its first body
	for _, m := range msgs {
		var n vfjobs.Notice
		if err := json.Unmarshal([]byte(m.Body), &n); err != nil {
			violate(m.Attrs["export_id"], "a results queue message that is no notice (%v): %.300s", err, m.Body)
			continue
		}
		if first, ok := bodies[n.NoticeID]; ok {
			ns.Copies++
			if first != m.Body {
				violate(n.ExportID, "two copies of notice %s differ:\n      %s\n      %s", n.NoticeID, first, m.Body)
			}
			continue
		}
		bodies[n.NoticeID] = m.Body
		if schema != nil {
			problems, err := jsontest.Validate(schema, []byte(m.Body))
			switch {
			case err != nil:
				violate(n.ExportID, "notice %s: the schema could not be evaluated: %v", n.NoticeID, err)
			case len(problems) > 0:
				violate(n.ExportID, "notice %s is not valid to docs/result-notice.schema.json: %s; body %.500s", n.NoticeID, strings.Join(problems, "; "), m.Body)
			}
		}
		if a := m.Attrs; a["notice_id"] != n.NoticeID || a["export_id"] != n.ExportID || a["outcome"] != string(n.Outcome) ||
			a["kind"] != n.Kind || a["destination"] != n.Destination {
			violate(n.ExportID, "notice %s: message attributes %v do not agree with its body", n.NoticeID, m.Attrs)
		}
		if want := vfjobs.NoticeID(n.ExportID, n.Outcome, n.Attempts); n.NoticeID != want {
			violate(n.ExportID, "notice id %q, but its export_id, outcome and attempts make %q", n.NoticeID, want)
		}
		if !known(n.ExportID) {
			violate(n.ExportID, "notice %s of an export the campaign never sent: %.300s", n.NoticeID, m.Body)
			continue
		}
		if ns.ByExport[n.ExportID] == nil {
			ns.ByExport[n.ExportID] = map[string]vfjobs.Notice{}
		}
		ns.ByExport[n.ExportID][n.NoticeID] = n
		ns.Outcomes[string(n.Outcome)]++
	}
	return ns, vs
}

// ExportEnd is what the checker found of an export, for its notices.
type ExportEnd struct {
	Job      *Job
	Complete bool      // one data object and one manifest
	Manifest *manifest // the manifest, when complete
	// DLQ are its dead-letter messages (job messages only).
	DLQ []DLQEntry
	// The ledger's.
	Status    string
	Permanent bool
	Attempts  int64
}

// manifest is what the checker reads of a manifest.
type manifest struct {
	ExportID        string `json:"export_id"`
	Kind            string `json:"kind"`
	Format          string `json:"format"`
	Destination     string `json:"destination"`
	Bucket          string `json:"bucket"`
	Key             string `json:"key"`
	Rows            int64  `json:"rows"`
	BytesCompressed int64  `json:"bytes_compressed"`
	SHA256          string `json:"sha256"`
}

// byOutcome returns the export's notices of outcome, by notice id.
func byOutcome(ns map[string]vfjobs.Notice, o vfjobs.Outcome) []vfjobs.Notice {
	var out []vfjobs.Notice
	for _, n := range ns {
		if n.Outcome == o {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].NoticeID < out[k].NoticeID })
	return out
}

func noticeIDs(ns []vfjobs.Notice) string {
	var ids []string
	for _, n := range ns {
		ids = append(ids, n.NoticeID)
	}
	return strings.Join(ids, ", ")
}

// checkExportNotices checks the notices of one export against how it ended; outbox says what
// the outbox holds of a notice id, for the violations' details.
func checkExportNotices(e ExportEnd, ns map[string]vfjobs.Notice, outbox func(noticeID string) string) []Violation {
	id := e.Job.ExportID
	var vs []Violation
	violate := func(format string, args ...any) {
		vs = append(vs, Violation{"notice", id, fmt.Sprintf(format, args...)})
	}
	missing := func(o vfjobs.Outcome) string {
		if outbox == nil {
			return ""
		}
		return "; outbox: " + outbox(id+":"+string(o)+":")
	}
	succ := byOutcome(ns, vfjobs.OutcomeSucceeded)
	canc := byOutcome(ns, vfjobs.OutcomeCancelled)
	failed := byOutcome(ns, vfjobs.OutcomeFailed)
	dead := byOutcome(ns, vfjobs.OutcomeDeadLettered)
	if len(succ) > 0 && len(canc) > 0 {
		violate("announced both succeeded (%s) and cancelled (%s)", noticeIDs(succ), noticeIDs(canc))
	}
	if e.Complete {
		switch {
		case len(succ) == 0:
			violate("complete, but no succeeded notice reached the results queue (ledger %q)%s", e.Status, missing(vfjobs.OutcomeSucceeded))
		case len(succ) > 1:
			violate("complete once, but %d different succeeded notices: %s", len(succ), noticeIDs(succ))
		}
		for _, n := range succ {
			m, mf := n.Manifest, e.Manifest
			switch {
			case m == nil:
				violate("succeeded notice %s without the manifest's fields", n.NoticeID)
			case mf != nil && (m.Bucket != mf.Bucket || m.Key != mf.Key || m.Rows != mf.Rows || m.SHA256 != mf.SHA256 || m.BytesCompressed != mf.BytesCompressed):
				violate("succeeded notice %s says %s/%s, %d rows, %d bytes, SHA-256 %s; the manifest %s/%s, %d rows, %d bytes, SHA-256 %s",
					n.NoticeID, m.Bucket, m.Key, m.Rows, m.BytesCompressed, m.SHA256, mf.Bucket, mf.Key, mf.Rows, mf.BytesCompressed, mf.SHA256)
			}
			if n.Kind != e.Job.Kind || n.Destination != e.Job.Destination || n.RequestedBy != "chaos" {
				violate("succeeded notice %s says kind %q destination %q requested_by %q; the job %q %q %q", n.NoticeID, n.Kind, n.Destination, n.RequestedBy, e.Job.Kind, e.Job.Destination, "chaos")
			}
		}
		if len(failed)+len(dead)+len(canc) > 0 {
			violate("complete, but announced as %s too", noticeIDs(append(append(failed, dead...), canc...)))
		}
	} else if len(succ) > 0 {
		violate("announced succeeded (%s), but it has no complete object (ledger %q)", noticeIDs(succ), e.Status)
	}
	if len(e.DLQ) > 0 {
		byWorker := false
		for _, d := range e.DLQ {
			byWorker = byWorker || d.Reason != "max_receives"
		}
		if byWorker && len(dead) == 0 {
			violate("its message is in the DLQ (%s), but no dead_lettered notice reached the results queue%s", e.DLQ[0].Reason, missing(vfjobs.OutcomeDeadLettered))
		}
		if e.Status == "failed" && e.Permanent && e.Attempts > 0 && len(failed) == 0 {
			violate("failed for good after %d attempt(s) and dead-lettered, but no failed notice reached the results queue%s", e.Attempts, missing(vfjobs.OutcomeFailed))
		}
	}
	if e.Status == "cancelled" {
		if len(canc) == 0 {
			violate("cancelled in the ledger, but no cancelled notice reached the results queue%s", missing(vfjobs.OutcomeCancelled))
		}
	} else if len(canc) > 0 {
		violate("announced cancelled (%s), but the ledger says %q", noticeIDs(canc), e.Status)
	}
	return vs
}
