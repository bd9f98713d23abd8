package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	vfjobs "github.com/verifiedfan/export-service/jobs"
)

// The invariants, checked at the end with clients of the checker's own (straight to the
// servers, never through the campaign's proxies):
//
//	object     every accepted export that is not dead-lettered is exactly one object whose
//	           gunzipped rows equal an independent query of MongoDB (same order), with a
//	           manifest whose SHA-256 (recomputed from the downloaded bytes), size, row count,
//	           bucket and key match
//	parts      a multipart object's parts (read one by one with S3's partNumber): every part
//	           but the last at least 5 MiB, each whole gzip members that end at a row's end
//	identical  a multipart object is byte for byte what an uninterrupted run of its export
//	           writes (reference.go: each is run again after the campaign, without faults)
//	dlq        or it is in the dead-letter queue with a reason (a message without a reason
//	           attribute was moved by the queue's redrive policy: max_receives), and has no
//	           object
//	orphan     no object without its manifest, no manifest without its object
//	upload     no unfinished multipart upload under the campaign's prefixes
//	rerun      no "export started" of an export after its first "export succeeded" (workers'
//	           JSON logs)
//	ledger     the ledger agrees: succeeded exports are succeeded with the object's key,
//	           rows and SHA-256, and no checkpoint left; nothing is left running
//	notice     every results queue message is a result notice valid to
//	           docs/result-notice.schema.json, of an export the campaign sent, its copies
//	           identical; a complete export has one succeeded notice that agrees with its
//	           manifest, a dead-lettered one a dead_lettered notice (and a failed notice when
//	           it failed for good after running), a cancelled one a cancelled notice; no
//	           export is announced both succeeded and cancelled (notices.go)
//	cancel     an export the campaign cancelled (cancel.go) is either cancelled in the ledger
//	           with no object, no manifest and no upload of its key left, or it finished
//	           first: succeeded (checked as every export) or failed for good (dead-lettered,
//	           ledger failed); nothing the campaign did not cancel is cancelled
//	process    no running worker exited on its own, or with a non-zero code after SIGTERM, or
//	           hung on shutdown; no panic or fatal output (start-up failures are notes)
//	settled    every export ended (complete or dead-lettered) before the campaign's deadline

// Violation is a broken invariant.
type Violation struct {
	Invariant string
	ExportID  string
	Detail    string
}

func (v Violation) String() string {
	if v.ExportID == "" {
		return fmt.Sprintf("[%s] %s", v.Invariant, v.Detail)
	}
	return fmt.Sprintf("[%s] %s: %s", v.Invariant, v.ExportID, v.Detail)
}

// Object is an object found under the campaign's prefixes.
type Object struct {
	Bucket, Key string
	Size        int64
}

// DLQEntry is a dead-letter message.
type DLQEntry struct {
	ExportID, Reason, Error, ReceiveCount string
}

// Checker verifies a campaign's outcome.
type Checker struct {
	S3      *s3.Client // admin: reads every bucket
	SQS     *sqs.Client
	DB      *mongo.Database
	Buckets map[string]string // destination -> bucket
	Prefix  string            // the campaign's key prefix, in every bucket
	DLQURL  string
	Results string // results queue URL
	Jobs    []*Job
	Logs    *Logs
	// NoticeSchema is docs/result-notice.schema.json, decoded (jsontest.Decode); nil: the
	// notices are not validated against it.
	NoticeSchema any
	// Notices are the results queue's notices, as Check read them.
	Notices *Notices

	Violations []Violation
	Counts     map[string]int
	Rows       map[string]int64 // export id -> rows verified
	// Verified are the objects verified, by export id.
	Verified map[string]Verified
	// Resume sums the ledger's resume counters by collection.
	Resume map[string]*ResumeStats
}

// Verified is an object whose rows, manifest and ledger entry were verified.
type Verified struct {
	Object
	SHA256  string
	Parts   int // 1 for an object written with a single request
	Resumes int // the ledger's
}

// ResumeStats are the ledger's resume counters of some exports, summed.
type ResumeStats struct {
	Exports     int   // exports
	Resumed     int   // exports that continued from a checkpoint at least once
	Resumes     int   // attempts that continued from a checkpoint
	Restarts    int   // attempts whose checkpoint's upload was gone: they started over
	RowsResumed int64 // rows those attempts did not read again
	RowsReread  int64 // rows read again: past the last checkpoint, or from the start
	MultiPart   int   // verified objects of more than one part
	Parts       []int // their parts
}

func (r *ResumeStats) String() string {
	parts := append([]int(nil), r.Parts...)
	sort.Ints(parts)
	return fmt.Sprintf("%d of %d exports resumed at least once; resumes %d, restarts %d, rows_resumed %d, rows_reread %d; multipart objects %d (parts %v)",
		r.Resumed, r.Exports, r.Resumes, r.Restarts, r.RowsResumed, r.RowsReread, r.MultiPart, parts)
}

func (r *ResumeStats) add(o *ResumeStats) {
	r.Exports += o.Exports
	r.Resumed += o.Resumed
	r.Resumes += o.Resumes
	r.Restarts += o.Restarts
	r.RowsResumed += o.RowsResumed
	r.RowsReread += o.RowsReread
	r.MultiPart += o.MultiPart
	r.Parts = append(r.Parts, o.Parts...)
}

func (c *Checker) violate(inv, id, format string, args ...any) {
	c.Violations = append(c.Violations, Violation{inv, id, fmt.Sprintf(format, args...)})
}

// listObjects lists every object under the prefix in every bucket.
func (c *Checker) listObjects(ctx context.Context) ([]Object, error) {
	var out []Object
	seen := map[string]bool{}
	for _, b := range c.Buckets {
		if seen[b] {
			continue
		}
		seen[b] = true
		p := s3.NewListObjectsV2Paginator(c.S3, &s3.ListObjectsV2Input{Bucket: aws.String(b), Prefix: aws.String(c.Prefix)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("list %s/%s: %w", b, c.Prefix, err)
			}
			for _, o := range page.Contents {
				out = append(out, Object{b, aws.ToString(o.Key), aws.ToInt64(o.Size)})
			}
		}
	}
	return out, nil
}

// Upload is an unfinished multipart upload.
type Upload struct {
	Bucket, Key, ID string
	Initiated       time.Time
}

func (u Upload) String() string {
	return fmt.Sprintf("%s/%s upload %s initiated %s", u.Bucket, u.Key, u.ID, u.Initiated.UTC().Format(time.RFC3339))
}

// ListUploads lists unfinished multipart uploads under the prefix.
func (c *Checker) ListUploads(ctx context.Context) ([]Upload, error) {
	var out []Upload
	seen := map[string]bool{}
	for _, b := range c.Buckets {
		if seen[b] {
			continue
		}
		seen[b] = true
		in := &s3.ListMultipartUploadsInput{Bucket: aws.String(b), Prefix: aws.String(c.Prefix)}
		for {
			page, err := c.S3.ListMultipartUploads(ctx, in)
			if err != nil {
				return nil, fmt.Errorf("list uploads %s/%s: %w", b, c.Prefix, err)
			}
			for _, u := range page.Uploads {
				out = append(out, Upload{b, aws.ToString(u.Key), aws.ToString(u.UploadId), aws.ToTime(u.Initiated)})
			}
			if !aws.ToBool(page.IsTruncated) {
				break
			}
			in.KeyMarker, in.UploadIdMarker = page.NextKeyMarker, page.NextUploadIdMarker
		}
	}
	return out, nil
}

// drainQueue receives every message of a queue (hiding them for 10 minutes).
func drainQueue(ctx context.Context, c *sqs.Client, url string) ([]sqstypes.Message, error) {
	var out []sqstypes.Message
	empty := 0
	for empty < 2 {
		res, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, VisibilityTimeout: 600, WaitTimeSeconds: 1,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount},
		})
		if err != nil {
			return nil, err
		}
		if len(res.Messages) == 0 {
			empty++
			continue
		}
		empty = 0
		out = append(out, res.Messages...)
	}
	return out, nil
}

func attrString(m sqstypes.Message, name string) string {
	if a, ok := m.MessageAttributes[name]; ok {
		return aws.ToString(a.StringValue)
	}
	return ""
}

func exportIDOf(body string) string {
	var m struct {
		ExportID string `json:"export_id"`
	}
	_ = json.Unmarshal([]byte(body), &m)
	return m.ExportID
}

// Check runs every invariant.
func (c *Checker) Check(ctx context.Context) error {
	c.Counts = map[string]int{}
	c.Rows = map[string]int64{}
	c.Verified = map[string]Verified{}
	c.Resume = map[string]*ResumeStats{}
	byID := map[string]*Job{}
	for _, j := range c.Jobs {
		byID[j.ExportID] = j
	}

	// The dead-letter queue.
	dlq := map[string][]DLQEntry{}
	cancelDLQ := map[string][]DLQEntry{} // dead-lettered cancel messages
	msgs, err := drainQueue(ctx, c.SQS, c.DLQURL)
	if err != nil {
		return fmt.Errorf("read the DLQ: %w", err)
	}
	for _, m := range msgs {
		e := DLQEntry{ExportID: attrString(m, "export_id"), Reason: attrString(m, "reason"), Error: attrString(m, "error"),
			ReceiveCount: m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)]}
		if e.ExportID == "" {
			e.ExportID = exportIDOf(aws.ToString(m.Body))
		}
		if e.Reason == "" {
			e.Reason = "max_receives"
		}
		if byID[e.ExportID] == nil {
			c.violate("dlq", e.ExportID, "a dead-letter message of no export the campaign sent: %q", aws.ToString(m.Body))
			continue
		}
		if vfjobs.IsCancelMessage([]byte(aws.ToString(m.Body))) {
			// Its export is checked as one whose cancel was not carried out.
			cancelDLQ[e.ExportID] = append(cancelDLQ[e.ExportID], e)
			c.Counts["cancel messages dead-lettered"]++
			continue
		}
		dlq[e.ExportID] = append(dlq[e.ExportID], e)
	}

	// Result notices, and what the outbox holds of them (for the violations' details).
	c.Notices = &Notices{ByExport: map[string]map[string]vfjobs.Notice{}, Outcomes: map[string]int{}}
	if c.Results != "" {
		msgs, err := drainQueue(ctx, c.SQS, c.Results)
		if err != nil {
			return fmt.Errorf("read the results queue: %w", err)
		}
		var raw []RawNotice
		for _, m := range msgs {
			r := RawNotice{Body: aws.ToString(m.Body), Attrs: map[string]string{}}
			for k, v := range m.MessageAttributes {
				r.Attrs[k] = aws.ToString(v.StringValue)
			}
			raw = append(raw, r)
		}
		ns, vs := readNotices(c.NoticeSchema, raw, func(id string) bool { return byID[id] != nil })
		c.Notices = ns
		c.Violations = append(c.Violations, vs...)
	}
	outbox, err := c.outbox(ctx)
	if err != nil {
		return err
	}
	cancelRequests := map[string]bool{}
	creqs, err := readAll(ctx, c.DB.Collection("export_cancels"), "the cancel requests")
	if err != nil {
		return err
	}
	for _, r := range creqs {
		id, _ := r["_id"].(string)
		cancelRequests[id] = true
		if byID[id] == nil || byID[id].Cancel == nil {
			c.violate("cancel", id, "a cancel request in the ledger of an export the campaign did not cancel: %v", r)
		}
	}
	c.Counts["cancel requests recorded"] = len(creqs)

	// Objects: data objects and manifests by export id. An export's keys end in
	// <export_id>.<format>.gz (every destination's template here) and its manifest's in
	// <export_id>.<format>.gz.manifest.json.
	objs, err := c.listObjects(ctx)
	if err != nil {
		return err
	}
	data := map[string][]Object{}
	manifests := map[string][]Object{}
	for _, o := range objs {
		base := path.Base(o.Key)
		id, _, _ := strings.Cut(base, ".")
		if byID[id] == nil {
			c.violate("orphan", "", "object %s/%s belongs to no export of the campaign", o.Bucket, o.Key)
			continue
		}
		if strings.HasSuffix(o.Key, ".manifest.json") {
			manifests[id] = append(manifests[id], o)
		} else {
			data[id] = append(data[id], o)
		}
	}

	uploads, err := c.ListUploads(ctx)
	if err != nil {
		return err
	}
	uploadsOf := map[string][]Upload{}
	for _, u := range uploads {
		c.violate("upload", "", "unfinished multipart upload left: %s", u)
		id, _, _ := strings.Cut(path.Base(u.Key), ".")
		uploadsOf[id] = append(uploadsOf[id], u)
	}
	c.Counts["uploads left"] = len(uploads)

	// The ledger.
	ledger := map[string]bson.M{}
	entries, err := readAll(ctx, c.DB.Collection("exports"), "the ledger")
	if err != nil {
		return err
	}
	for _, e := range entries {
		id, _ := e["_id"].(string)
		ledger[id] = e
	}

	// Reruns after success, from the logs.
	c.Violations = append(c.Violations, reruns(c.Logs.Events())...)
	started := map[string]int{}
	for _, ev := range c.Logs.Events() {
		switch ev.Message {
		case "export started":
			started[ev.ExportID]++
			if strings.Contains(ev.Line, `"checkpoint_rows":`) {
				c.Counts["attempts started with a checkpoint"]++
			}
		case "saving the export's checkpoint failed; going on":
			c.Counts["checkpoint saves failed (went on)"]++
		}
	}

	var ends []*ExportEnd
	for _, j := range c.Jobs {
		id := j.ExportID
		d, m, dl := data[id], manifests[id], dlq[id]
		le := ledger[id]
		status, _ := le["status"].(string)
		attempts, _ := asInt64(le["attempts"])
		end := &ExportEnd{Job: j, DLQ: dl, Status: status, Permanent: le["permanent"] == true, Attempts: attempts}
		ends = append(ends, end)
		if j.Cancel != nil {
			c.Counts["cancels sent"]++
			if len(cancelDLQ[id]) > 0 {
				c.Counts["cancels dead-lettered (never recorded?)"]++
			}
		}
		c.Counts["attempts started"] += started[id]
		rs := c.Resume[j.Collection]
		if rs == nil {
			rs = &ResumeStats{}
			c.Resume[j.Collection] = rs
		}
		rs.Exports++
		resumes, _ := asInt64(le["resumes"])
		rs.Resumes += int(resumes)
		if resumes > 0 {
			rs.Resumed++
		}
		n, _ := asInt64(le["restarts"])
		rs.Restarts += int(n)
		n, _ = asInt64(le["rows_resumed"])
		rs.RowsResumed += n
		n, _ = asInt64(le["rows_reread"])
		rs.RowsReread += n
		switch {
		case len(dl) > 0:
			c.Counts["dead-lettered"]++
			c.Counts["dead-lettered: "+dl[0].Reason]++
			if len(dl) > 1 {
				c.violate("dlq", id, "%d dead-letter messages", len(dl))
			}
			if len(d) > 0 || len(m) > 0 {
				c.violate("dlq", id, "dead-lettered (%s: %s) but it has %d object(s) and %d manifest(s); ledger %q%s", dl[0].Reason, dl[0].Error, len(d), len(m), status, c.describe(ctx, j, d))
			}
			if status == "succeeded" || status == "running" {
				c.violate("ledger", id, "dead-lettered (%s) but the ledger says %q", dl[0].Reason, status)
			}
			if le["checkpoint"] != nil {
				c.Counts["dead-lettered with a checkpoint left"]++
			}
			if j.Cancel != nil {
				if status == "failed" {
					c.Counts["cancels: failed for good first"]++
				} else {
					c.violate("cancel", id, "cancelled (%s), and dead-lettered (%s: %s) although the ledger says %q, not failed for good before the cancel",
						j.Cancel, dl[0].Reason, dl[0].Error, status)
				}
			}
			continue
		case status == "cancelled":
			if j.Cancel == nil {
				c.violate("cancel", id, "cancelled in the ledger (%v), but the campaign never cancelled it", le["error"])
			} else {
				c.Counts["cancels: carried out"]++
				c.Counts["cancels carried out: "+j.Cancel.Mode]++
			}
			if len(d) > 0 || len(m) > 0 {
				c.violate("cancel", id, "cancelled, but %d data object(s) and %d manifest(s) are there: %v%s", len(d), len(m), append(d, m...), c.describe(ctx, j, d))
			}
			if u := uploadsOf[id]; len(u) > 0 {
				c.violate("cancel", id, "cancelled, but its upload is still open: %v", u)
			}
			if le["checkpoint"] != nil {
				c.violate("ledger", id, "cancelled, but its checkpoint is still in the ledger: %s", describeCheckpoint(le["checkpoint"]))
			}
			continue
		case len(d) == 0 && len(m) == 0:
			cancel := ""
			if j.Cancel != nil {
				cancel = "; " + j.Cancel.String()
			}
			c.violate("settled", id, "neither an object nor a dead-letter message (and no message left in the jobs queue); ledger: status %q, worker %v, attempts %v, message %v, lease expires %v, error %q%s",
				status, le["worker_id"], le["attempts"], le["message_id"], leaseOf(le), le["error"], cancel)
			continue
		}
		if len(d) != 1 {
			c.violate("object", id, "%d data objects: %v", len(d), d)
		}
		if len(m) != 1 {
			c.violate("orphan", id, "%d manifests for %d data object(s): %v%s", len(m), len(d), append(d, m...), c.describe(ctx, j, d))
		}
		if len(d) != 1 || len(m) != 1 {
			continue
		}
		c.Counts["objects"]++
		end.Complete = true
		if status != "succeeded" {
			c.violate("ledger", id, "object complete, but the ledger says %q (error %v)", status, le["error"])
		}
		if j.Cancel != nil {
			c.Counts["cancels: finished first"]++
			if cancelRequests[id] {
				// Recorded while the export ran, after its fence read no cancel: it committed.
				c.Counts["cancels: finished first, request recorded"]++
			}
		}
		mf, err := c.checkObject(ctx, j, d[0], m[0], le)
		if err != nil {
			return err
		}
		end.Manifest = mf
		if v, ok := c.Verified[id]; ok && v.Parts > 1 {
			rs.MultiPart++
			rs.Parts = append(rs.Parts, v.Parts)
		}
	}
	for id := range manifests {
		if len(data[id]) == 0 && len(dlq[id]) == 0 {
			c.violate("orphan", id, "manifest without its object: %v", manifests[id])
		}
	}
	for id, e := range ledger {
		if byID[id] == nil {
			continue
		}
		if e["status"] == "running" {
			c.violate("ledger", id, "still running in the ledger on %v", e["worker_id"])
		}
		if cp, ok := e["checkpoint"]; ok && e["status"] == "succeeded" {
			// Finish and Adopt remove it: nothing may continue a complete export.
			c.violate("ledger", id, "succeeded, but its checkpoint is still in the ledger: %s", describeCheckpoint(cp))
		}
	}
	if c.Results != "" {
		for _, e := range ends {
			c.Violations = append(c.Violations, checkExportNotices(*e, c.Notices.ByExport[e.Job.ExportID], outbox)...)
		}
	}
	c.Counts["notice messages"] = c.Notices.Messages
	c.Counts["notice copies (a notice id again, identical)"] = c.Notices.Copies
	for o, n := range c.Notices.Outcomes {
		c.Counts["notices: "+o] = n
	}
	return nil
}

// readAll reads every document of coll; what names it in the error ("read <what>: ...").
func readAll(ctx context.Context, coll *mongo.Collection, what string) ([]bson.M, error) {
	cur, err := coll.Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	var docs []bson.M
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return docs, nil
}

// outbox reads the outbox (the export_notices collection) and returns a function that says what
// it holds of the notice ids with a prefix ("none" when nothing).
func (c *Checker) outbox(ctx context.Context) (func(string) string, error) {
	docs, err := readAll(ctx, c.DB.Collection("export_notices"), "the outbox")
	if err != nil {
		return nil, err
	}
	c.Counts["outbox notices"] = len(docs)
	for _, d := range docs {
		if d["pending"] == true {
			c.Counts["outbox notices still pending"]++
		}
	}
	return func(prefix string) string {
		var out []string
		for _, d := range docs {
			if id, _ := d["_id"].(string); strings.HasPrefix(id, prefix) {
				out = append(out, fmt.Sprintf("%s pending=%v send attempts %v error %q", id, d["pending"], d["attempts"], d["error"]))
			}
		}
		if len(out) == 0 {
			return "none"
		}
		return strings.Join(out, "; ")
	}, nil
}

// describe says what the data objects hold (for objects that should not be there): whether
// each is a whole gzip stream, and its rows against MongoDB's.
func (c *Checker) describe(ctx context.Context, j *Job, objs []Object) string {
	var parts []string
	for _, o := range objs {
		body, err := c.get(ctx, o)
		if err != nil {
			parts = append(parts, err.Error())
			continue
		}
		docs, err := expectedDocs(ctx, c.DB, j)
		if err != nil {
			parts = append(parts, err.Error())
			continue
		}
		plain, gzErr := gunzipAll(body)
		n, rowsErr := compareRows(j, plain, docs)
		s := fmt.Sprintf("%s: %d bytes", o.Key, len(body))
		if gzErr != nil {
			s += fmt.Sprintf(", not a whole gzip stream (%v)", gzErr)
		}
		if rowsErr != nil {
			s += fmt.Sprintf(", rows: %v", rowsErr)
		} else {
			s += fmt.Sprintf(", all %d rows right", n)
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return ""
	}
	return "; object " + strings.Join(parts, "; ")
}

// reruns finds, in events sorted by time, an "export started" after the export's first
// "export succeeded".
func reruns(events []LogEvent) []Violation {
	var out []Violation
	firstSuccess := map[string]LogEvent{}
	for _, ev := range events {
		switch ev.Message {
		case "export succeeded":
			if _, ok := firstSuccess[ev.ExportID]; !ok {
				firstSuccess[ev.ExportID] = ev
			}
		case "export started":
			if s, ok := firstSuccess[ev.ExportID]; ok {
				out = append(out, Violation{"rerun", ev.ExportID, fmt.Sprintf("started on %s at %s, after it succeeded on %s at %s",
					ev.Worker, ev.Time.Format("15:04:05.000"), s.Worker, s.Time.Format("15:04:05.000"))})
			}
		}
	}
	return out
}

// checkObject downloads the object and its manifest and checks them against each other, the
// ledger and MongoDB. It returns the manifest, or nil when it could not be decoded.
func (c *Checker) checkObject(ctx context.Context, j *Job, obj, man Object, le bson.M) (*manifest, error) {
	id := j.ExportID
	if want := c.Buckets[j.Destination]; obj.Bucket != want {
		c.violate("object", id, "object in bucket %s, destination %s is bucket %s", obj.Bucket, j.Destination, want)
	}
	body, err := c.get(ctx, obj)
	if err != nil {
		return nil, err
	}
	mb, err := c.get(ctx, man)
	if err != nil {
		return nil, err
	}
	var mf manifest
	if err := json.Unmarshal(mb, &mf); err != nil {
		c.violate("object", id, "manifest %s is not JSON: %v", man.Key, err)
		return nil, nil
	}
	sum := sha256.Sum256(body)
	got := hex.EncodeToString(sum[:])
	if s, _ := le["sha256"].(string); s != "" && s != got {
		c.violate("ledger", id, "ledger SHA-256 %s, the object's %d bytes have %s", s, len(body), got)
	}
	switch {
	case mf.ExportID != id || mf.Kind != j.Kind || mf.Format != j.Format || mf.Destination != j.Destination:
		c.violate("object", id, "manifest says export %q kind %q format %q destination %q", mf.ExportID, mf.Kind, mf.Format, mf.Destination)
	case mf.Bucket != obj.Bucket || mf.Key != obj.Key:
		c.violate("object", id, "manifest names %s/%s, the object is %s/%s", mf.Bucket, mf.Key, obj.Bucket, obj.Key)
	case mf.SHA256 != got:
		c.violate("object", id, "SHA-256 of the object's %d bytes is %s, the manifest says %s", len(body), got, mf.SHA256)
	case mf.BytesCompressed != int64(len(body)):
		c.violate("object", id, "object has %d bytes, the manifest says %d", len(body), mf.BytesCompressed)
	}
	plain, err := gunzipAll(body)
	if err != nil {
		c.violate("object", id, "the object is not a whole gzip stream (%d bytes, %d decompressed): %v", len(body), len(plain), err)
		return &mf, nil
	}
	docs, err := expectedDocs(ctx, c.DB, j)
	if err != nil {
		return nil, fmt.Errorf("query MongoDB for %s: %w", id, err)
	}
	n, ends, err := compareRowsEnds(j, plain, docs)
	if err != nil {
		c.violate("object", id, "rows differ from MongoDB's %d: %v", len(docs), err)
		return &mf, nil
	}
	parts, err := c.checkParts(ctx, id, obj, body, ends)
	if err != nil {
		return nil, err
	}
	if mf.Rows != int64(n) {
		c.violate("object", id, "the object has %d rows, the manifest says %d", n, mf.Rows)
		return &mf, nil
	}
	if key, _ := le["key"].(string); key != "" && key != obj.Key {
		c.violate("ledger", id, "ledger key %q, object %q", key, obj.Key)
	}
	if rows, ok := asInt64(le["rows"]); ok && rows != int64(n) {
		c.violate("ledger", id, "ledger rows %d, object %d", rows, n)
	}
	c.Rows[id] = int64(n)
	c.Counts["objects verified"]++
	resumes, _ := asInt64(le["resumes"])
	c.Verified[id] = Verified{Object: obj, SHA256: got, Parts: parts, Resumes: int(resumes)}
	if parts > 1 {
		c.Counts["multipart objects verified"]++
		if mf.SHA256 == got {
			c.Counts["multipart objects whose manifest SHA-256 is the bytes'"]++
		}
	}
	return &mf, nil
}

// checkParts checks a multipart object part by part (HeadObject with partNumber gives each
// part's size): every part but the last at least S3's 5 MiB minimum, and each part whole gzip
// members (it decompresses alone) ending at the end of a row (ends: where rows end in the
// decompressed text). That is what lets an attempt stop after any stored part and another
// continue with the next. It returns the number of parts: 1 for an object written with a
// single request.
func (c *Checker) checkParts(ctx context.Context, id string, obj Object, body []byte, ends []int64) (int, error) {
	head := func(n int) (*s3.HeadObjectOutput, error) {
		h, err := c.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key), PartNumber: aws.Int32(int32(n))})
		if err != nil {
			return nil, fmt.Errorf("head part %d of %s/%s: %w", n, obj.Bucket, obj.Key, err)
		}
		return h, nil
	}
	h, err := head(1)
	if err != nil {
		return 0, err
	}
	count := int(aws.ToInt32(h.PartsCount))
	if count <= 1 {
		return 1, nil
	}
	isEnd := make(map[int64]bool, len(ends))
	for _, e := range ends {
		isEnd[e] = true
	}
	var off, textOff int64
	for n := 1; n <= count; n++ {
		if n > 1 {
			if h, err = head(n); err != nil {
				return 0, err
			}
		}
		size := aws.ToInt64(h.ContentLength)
		if off+size > int64(len(body)) {
			c.violate("parts", id, "part %d of %d (%d bytes at %d) goes past the object's %d bytes", n, count, size, off, len(body))
			return count, nil
		}
		if n < count && size < 5<<20 {
			c.violate("parts", id, "part %d of %d has %d bytes, less than S3's 5 MiB minimum for all but the last", n, count, size)
		}
		text, err := gunzipAll(body[off : off+size])
		if err != nil {
			c.violate("parts", id, "part %d of %d (bytes %d-%d) is not whole gzip members: %v", n, count, off, off+size-1, err)
			return count, nil
		}
		textOff += int64(len(text))
		if n < count && !isEnd[textOff] {
			c.violate("parts", id, "part %d of %d ends at byte %d of the decompressed text, which is not the end of a row", n, count, textOff)
		}
		off += size
	}
	if off != int64(len(body)) {
		c.violate("parts", id, "the %d parts hold %d bytes, the object %d", count, off, len(body))
	}
	return count, nil
}

// describeCheckpoint summarizes a ledger checkpoint.
func describeCheckpoint(cp any) string {
	field := func(doc any, path string) any {
		for _, k := range strings.Split(path, ".") {
			switch d := doc.(type) {
			case bson.M:
				doc = d[k]
			case bson.D:
				doc = nil
				for _, e := range d {
					if e.Key == k {
						doc = e.Value
					}
				}
			default:
				return nil
			}
		}
		return doc
	}
	parts := "?"
	if a, ok := field(cp, "upload.parts").(bson.A); ok {
		parts = fmt.Sprint(len(a))
	}
	return fmt.Sprintf("key %v, %s part(s), %v rows, attempt %v, at %v", field(cp, "key"), parts, field(cp, "mark.rows"), field(cp, "attempt"), field(cp, "at"))
}

func leaseOf(le bson.M) string {
	if d, ok := le["lease_expires"].(bson.DateTime); ok {
		return d.Time().UTC().Format("15:04:05.000")
	}
	return "?"
}

func asInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case float64:
		return int64(x), true
	}
	return 0, false
}

func (c *Checker) get(ctx context.Context, o Object) ([]byte, error) {
	out, err := c.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(o.Bucket), Key: aws.String(o.Key)})
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", o.Bucket, o.Key, err)
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// Summary lists the violations by invariant.
func (c *Checker) Summary() []string {
	by := map[string]int{}
	for _, v := range c.Violations {
		by[v.Invariant]++
	}
	var out []string
	for k, n := range by {
		out = append(out, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(out)
	return out
}
