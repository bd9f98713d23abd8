package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/jobs/encode"
)

// awsRecorder is a loopback reverse proxy in front of SeaweedFS's S3 and STS endpoint, given to
// the worker as AWS_ENDPOINT_URL_STS and AWS_ENDPOINT_URL_S3. It records what the worker sent:
// the form of every AssumeRole call (SeaweedFS does not check external IDs, so the request is
// the only proof that one was sent), the access key each AssumeRole answer handed out, and the
// access key that signed every S3 request.
type awsRecorder struct {
	srv     *httptest.Server
	mu      sync.Mutex
	assumes []*assumeCall
	s3Calls []s3Call
}

type assumeCall struct {
	Form     url.Values
	SignedBy string
	Issued   string // the AccessKeyId of the answer, if any
	Status   int
}

type s3Call struct {
	Method, Path, Query, AccessKey string
}

type assumeKey struct{}

var (
	credentialRE  = regexp.MustCompile(`Credential=([^/,]+)/`)
	accessKeyIDRE = regexp.MustCompile(`<AccessKeyId>([^<]+)</AccessKeyId>`)
)

func newAWSRecorder(t *testing.T, target string) *awsRecorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &awsRecorder{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host // the SDK signed the proxy's host
		},
		ModifyResponse: func(resp *http.Response) error {
			call, _ := resp.Request.Context().Value(assumeKey{}).(*assumeCall)
			if call == nil {
				return nil
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			r.mu.Lock()
			defer r.mu.Unlock()
			call.Status = resp.StatusCode
			if m := accessKeyIDRE.FindSubmatch(body); m != nil {
				call.Issued = string(m[1])
			}
			return nil
		},
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		signedBy := ""
		if m := credentialRE.FindStringSubmatch(req.Header.Get("Authorization")); m != nil {
			signedBy = m[1]
		}
		if req.Method == http.MethodPost && strings.HasPrefix(req.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			body, _ := io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(body))
			if form, err := url.ParseQuery(string(body)); err == nil && form.Get("Action") == "AssumeRole" {
				call := &assumeCall{Form: form, SignedBy: signedBy}
				r.mu.Lock()
				r.assumes = append(r.assumes, call)
				r.mu.Unlock()
				req = req.WithContext(context.WithValue(req.Context(), assumeKey{}, call))
			}
		} else {
			r.mu.Lock()
			r.s3Calls = append(r.s3Calls, s3Call{Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery, AccessKey: signedBy})
			r.mu.Unlock()
		}
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// assumeCalls returns the AssumeRole calls for role.
func (r *awsRecorder) assumeCalls(role string) []assumeCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []assumeCall
	for _, c := range r.assumes {
		if c.Form.Get("RoleArn") == role {
			out = append(out, *c)
		}
	}
	return out
}

// bucketCalls returns the S3 requests (path-style) to bucket.
func (r *awsRecorder) bucketCalls(bucket string) []s3Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []s3Call
	for _, c := range r.s3Calls {
		if c.Path == "/"+bucket || strings.HasPrefix(c.Path, "/"+bucket+"/") {
			out = append(out, c)
		}
	}
	return out
}

// destBundle is a worker set up with partner destinations behind an awsRecorder.
type destBundle struct {
	*bundle
	rec    *awsRecorder
	prefix string // this test's key prefix in every bucket
	dests  map[string]map[string]any
}

func setupDestinations(t *testing.T, perCampaign int) *destBundle {
	t.Helper()
	b := setup(t, perCampaign)
	d := &destBundle{bundle: b, rec: newAWSRecorder(t, b.st.Env["AWS_ENDPOINT_URL_S3"]), prefix: "e2e-" + stacktest.RandomID() + "/"}
	env := b.st.Env
	d.dests = map[string]map[string]any{
		"sfmc": {"bucket": env["SFMC_BUCKET"], "prefix": d.prefix, "region": env["AWS_REGION"],
			"role_arn": env["SFMC_ROLE_ARN"], "external_id": "vf-export-e2e-sfmc", "session_name": "e2e-sfmc-session"},
		"tmol": {"bucket": env["TMOL_BUCKET"], "prefix": d.prefix, "role_arn": env["TMOL_ROLE_ARN"],
			"external_id": "vf-export-e2e-tmol", "session_name": "e2e-tmol-session",
			"key_template": "dt={date}/{kind}/{export_id}.{format}.gz", "checksum": "CRC64NVME"},
		"forbidden": {"bucket": env["SFMC_BUCKET"], "prefix": d.prefix, "role_arn": env["FORBIDDEN_ROLE_ARN"], "external_id": "vf-export-e2e-forbidden"},
	}
	t.Cleanup(func() {
		for _, bucket := range []string{env["SFMC_BUCKET"], env["TMOL_BUCKET"]} {
			d.deleteUnder(bucket, d.prefix)
		}
	})
	return d
}

func (d *destBundle) start(t *testing.T, extra map[string]string) *stacktest.Proc {
	t.Helper()
	doc, err := json.Marshal(d.dests)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"EXPORT_DESTINATIONS":  string(doc),
		"AWS_ENDPOINT_URL_STS": d.rec.srv.URL,
		"AWS_ENDPOINT_URL_S3":  d.rec.srv.URL,
	}
	for k, v := range extra {
		env[k] = v
	}
	return stacktest.Start(t, d.workerEnv(t, env), "worker")
}

func (d *destBundle) keysUnder(t *testing.T, bucket, prefix string) []string {
	t.Helper()
	out, err := d.st.S3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("list s3://%s/%s: %v", bucket, prefix, err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

func (d *destBundle) uploadsUnder(t *testing.T, bucket, prefix string) int {
	t.Helper()
	out, err := d.st.S3.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("list uploads of s3://%s/%s: %v", bucket, prefix, err)
	}
	return len(out.Uploads)
}

func (d *destBundle) deleteUnder(bucket, prefix string) {
	ctx := context.Background()
	out, err := d.st.S3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		return
	}
	for _, o := range out.Contents {
		_, _ = d.st.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: o.Key})
	}
}

// checkedExport is an export downloaded and checked against its manifest.
type checkedExport struct {
	Manifest jobs.Manifest
	Object   []byte
	Plain    []byte
}

// checkManifest waits for key's manifest, downloads it and the object independently (admin
// credentials), and checks that the manifest describes the object: size, SHA-256, S3 checksum
// (computed here, and as the server reports it), rows, bytes, columns and identity.
func (d *destBundle) checkManifest(t *testing.T, bucket, key, exportID, kind, dest string, format encode.Format) checkedExport {
	t.Helper()
	raw := d.waitObject(t, bucket, key+".manifest.json", 120*time.Second)
	var c checkedExport
	if err := json.Unmarshal(raw, &c.Manifest); err != nil {
		t.Fatalf("manifest of %s: %v\n%s", key, err, raw)
	}
	m := c.Manifest
	c.Object = d.waitObject(t, bucket, key, 5*time.Second)
	zr, err := gzip.NewReader(bytes.NewReader(c.Object))
	if err != nil {
		t.Fatalf("gunzip %s: %v", key, err)
	}
	if c.Plain, err = io.ReadAll(zr); err != nil {
		t.Fatalf("gunzip %s: %v", key, err)
	}
	sum := sha256.Sum256(c.Object)
	var rows int64
	var header []string
	switch format {
	case encode.FormatNDJSON:
		sc := bufio.NewScanner(bytes.NewReader(c.Plain))
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			if rows == 0 {
				var obj map[string]json.RawMessage
				if err := json.Unmarshal(sc.Bytes(), &obj); err != nil {
					t.Fatalf("ndjson line: %v", err)
				}
			}
			rows++
		}
		header = m.Columns // NDJSON has no header row; the keys are checked by the encoder tests
	default:
		recs := gunzipCSV(t, c.Object)
		header, rows = recs[0], int64(len(recs)-1)
	}
	// The full-object checksum of the configured algorithm, computed here over the download.
	algorithm, _ := d.dests[dest]["checksum"].(string)
	var crc string
	if algorithm == "CRC64NVME" {
		crc = base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint64(nil, crc64.Checksum(c.Object, crc64.MakeTable(0x9a6c9329ac4bc9b5))))
	} else {
		algorithm = "CRC32C"
		crc = base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, crc32.Checksum(c.Object, crc32.MakeTable(crc32.Castagnoli))))
	}
	for _, p := range []struct {
		what      string
		got, want any
	}{
		{"export_id", m.ExportID, exportID},
		{"kind", m.Kind, kind},
		{"destination", m.Destination, dest},
		{"bucket", m.Bucket, bucket},
		{"key", m.Key, key},
		{"format", m.Format, format},
		{"sha256", m.SHA256, hex.EncodeToString(sum[:])},
		{"bytes_compressed", m.BytesCompressed, int64(len(c.Object))},
		{"bytes_uncompressed", m.BytesUncompressed, int64(len(c.Plain))},
		{"rows", m.Rows, rows},
		{"columns", strings.Join(m.Columns, ","), strings.Join(header, ",")},
		{"content_encoding", m.ContentEncoding, "gzip"},
		{"s3_checksum", fmt.Sprint(m.S3Checksum), fmt.Sprint(&jobs.ManifestChecksum{Algorithm: algorithm, Type: "FULL_OBJECT", Value: crc})},
	} {
		if fmt.Sprint(p.got) != fmt.Sprint(p.want) {
			t.Errorf("%s: manifest %s = %v, the object says %v", key, p.what, p.got, p.want)
		}
	}
	if m.ServiceVersion == "" || m.StartedAt.IsZero() || m.FinishedAt.Before(m.StartedAt) || m.Parts < 1 || len(m.Params) == 0 {
		t.Errorf("%s: manifest %+v lacks a version, times, parts or params", key, m)
	}
	head, err := d.st.S3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ChecksumMode: s3types.ChecksumModeEnabled})
	if err != nil {
		t.Fatal(err)
	}
	got := aws.ToString(head.ChecksumCRC32C)
	if algorithm == "CRC64NVME" {
		got = aws.ToString(head.ChecksumCRC64NVME)
	}
	if got != crc && !strings.HasPrefix(got, crc+"-") {
		t.Errorf("%s: the server's %s is %q (%s), the object's %s", key, algorithm, got, head.ChecksumType, crc)
	}
	if aws.ToString(head.ContentEncoding) != "gzip" || aws.ToString(head.ContentType) != format.ContentType() || head.Metadata["export-id"] != exportID {
		t.Errorf("%s: content type %q, encoding %q, metadata %v", key, aws.ToString(head.ContentType), aws.ToString(head.ContentEncoding), head.Metadata)
	}
	return c
}

// checkRoleWrites checks that the worker assumed role with the configured external ID and
// session name, signing the AssumeRole call with its own key, and that every request to
// bucket was signed with an access key one of those calls handed out, never the worker's own.
func (d *destBundle) checkRoleWrites(t *testing.T, dest, bucket string) {
	t.Helper()
	cfg := d.dests[dest]
	role := cfg["role_arn"].(string)
	calls := d.rec.assumeCalls(role)
	if len(calls) == 0 {
		t.Fatalf("%s: no AssumeRole call for %s", dest, role)
	}
	issued := map[string]bool{}
	for _, c := range calls {
		if got := c.Form.Get("ExternalId"); got != cfg["external_id"] {
			t.Errorf("%s: AssumeRole ExternalId = %q, want %q", dest, got, cfg["external_id"])
		}
		if got := c.Form.Get("RoleSessionName"); got != cfg["session_name"] {
			t.Errorf("%s: AssumeRole RoleSessionName = %q, want %q", dest, got, cfg["session_name"])
		}
		if got := c.Form.Get("DurationSeconds"); got != "3600" {
			t.Errorf("%s: AssumeRole DurationSeconds = %q, want the default 3600", dest, got)
		}
		if c.SignedBy != d.st.Env["AWS_ACCESS_KEY_ID"] {
			t.Errorf("%s: AssumeRole signed by %q, not the worker's own key", dest, c.SignedBy)
		}
		if c.Issued != "" {
			issued[c.Issued] = true
		}
	}
	// Every request through this recorder came from this test's worker.
	writes := 0
	for _, c := range d.rec.bucketCalls(bucket) {
		if !issued[c.AccessKey] {
			t.Errorf("%s: %s %s?%s was signed with %q, not a key of role %s (issued: %v)", dest, c.Method, c.Path, c.Query, c.AccessKey, role, issued)
		}
		if c.Method == http.MethodPut || c.Method == http.MethodPost {
			writes++
		}
	}
	if writes == 0 {
		t.Errorf("%s: no write to %s went through the recorder", dest, bucket)
	}
}

// An SFMC export and a TMOL export land in the partners' buckets, written with each role's
// temporary credentials; each manifest matches its object downloaded and decompressed here;
// each completion notice reaches the results queue. The partner buckets refuse the worker's
// own credentials, and the TMOL bucket refuses the SFMC role's.
func TestExportsLandInPartnerBuckets(t *testing.T) {
	t.Parallel()
	d := setupDestinations(t, 150)
	ctx := context.Background()
	env := d.st.Env
	results, err := d.st.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("t-" + stacktest.RandomID() + "-results")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = d.st.SQS.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: results.QueueUrl})
	})
	p := d.start(t, map[string]string{"EXPORT_RESULTS_QUEUE_URL": aws.ToString(results.QueueUrl)})

	campaign := fixtures.Campaigns[0]
	sfmcID, tmolID := "e2e-sfmc-"+stacktest.RandomID(), "e2e-tmol-"+stacktest.RandomID()
	day := time.Now().UTC().Format(time.DateOnly)
	d.send(t, jobBody(t, jobs.Message{ExportID: sfmcID, Kind: "registrations", Destination: "sfmc", RequestedBy: "e2e",
		Params: json.RawMessage(fmt.Sprintf(`{"campaign_id":%q}`, campaign))}))
	d.send(t, jobBody(t, jobs.Message{ExportID: tmolID, Kind: "access_codes", Destination: "tmol", Format: encode.FormatNDJSON,
		Params: json.RawMessage(fmt.Sprintf(`{"campaign_id":%q}`, campaign))}))
	if after := time.Now().UTC().Format(time.DateOnly); after != day {
		t.Skipf("the UTC date changed while sending (%s -> %s): the {date} key is ambiguous", day, after)
	}

	sfmcKey := fmt.Sprintf("%sregistrations/%s/%s.csv.gz", d.prefix, campaign, sfmcID)
	sfmc := d.checkManifest(t, env["SFMC_BUCKET"], sfmcKey, sfmcID, "registrations", "sfmc", encode.FormatCSV)
	// The {date} of the TMOL template is the day the message was sent (SentTimestamp).
	tmolKey := fmt.Sprintf("%sdt=%s/access_codes/%s.ndjson.gz", d.prefix, day, tmolID)
	tmol := d.checkManifest(t, env["TMOL_BUCKET"], tmolKey, tmolID, "access_codes", "tmol", encode.FormatNDJSON)

	// Rows are what the database holds, counted here from the seed.
	var wantRegs, wantCodes int64
	for _, doc := range d.dataset.Registrations {
		if field(doc.(bson.D), "campaign_id") == campaign {
			wantRegs++
		}
	}
	for _, doc := range d.dataset.AccessCodes {
		if field(doc.(bson.D), "campaign_id") == campaign && field(doc.(bson.D), "status") == "assigned" {
			wantCodes++
		}
	}
	if sfmc.Manifest.Rows != wantRegs || tmol.Manifest.Rows != wantCodes {
		t.Errorf("rows: sfmc %d (want %d), tmol %d (want %d)", sfmc.Manifest.Rows, wantRegs, tmol.Manifest.Rows, wantCodes)
	}
	if sfmc.Manifest.RequestedBy != "e2e" || sfmc.Manifest.RequestedAt == nil || sfmc.Manifest.RequestedAt.Format(time.DateOnly) != day {
		t.Errorf("sfmc manifest: requested_by %q, requested_at %v", sfmc.Manifest.RequestedBy, sfmc.Manifest.RequestedAt)
	}
	// Nothing else: one object and its manifest per export.
	for bucket, want := range map[string][]string{env["SFMC_BUCKET"]: {sfmcKey, sfmcKey + ".manifest.json"}, env["TMOL_BUCKET"]: {tmolKey, tmolKey + ".manifest.json"}} {
		if got := d.keysUnder(t, bucket, d.prefix); !slices.Equal(got, want) {
			t.Errorf("s3://%s/%s holds %v, want %v", bucket, d.prefix, got, want)
		}
	}

	d.checkRoleWrites(t, "sfmc", env["SFMC_BUCKET"])
	d.checkRoleWrites(t, "tmol", env["TMOL_BUCKET"])
	mfs := p.Metrics(t)
	for _, dest := range []string{"sfmc", "tmol"} {
		if n := stacktest.Sum(mfs, "export_assume_role_total", map[string]string{"destination": dest, "result": "ok"}); n < 1 {
			t.Errorf("export_assume_role_total{destination=%q,result=ok} = %v", dest, n)
		}
	}

	// The completion notices carry the manifests.
	notices := map[string]jobs.Manifest{}
	deadline := time.Now().Add(30 * time.Second)
	for len(notices) < 2 && time.Now().Before(deadline) {
		out, err := d.st.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: results.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range out.Messages {
			var m jobs.Manifest
			if err := json.Unmarshal([]byte(aws.ToString(msg.Body)), &m); err != nil {
				t.Fatalf("notice: %v", err)
			}
			if got := aws.ToString(msg.MessageAttributes["export_id"].StringValue); got != m.ExportID {
				t.Errorf("notice attribute export_id %q, body %q", got, m.ExportID)
			}
			notices[m.ExportID] = m
		}
	}
	for _, c := range []checkedExport{sfmc, tmol} {
		n, ok := notices[c.Manifest.ExportID]
		if !ok || n.SHA256 != c.Manifest.SHA256 || n.Rows != c.Manifest.Rows || n.Key != c.Manifest.Key {
			t.Errorf("notice of %s = %+v, want its manifest", c.Manifest.ExportID, n)
		}
	}
	if n := stacktest.Sum(p.Metrics(t), "export_sqs_requests_total", map[string]string{"op": "send_result", "result": "ok"}); n != 2 {
		t.Errorf("send_result ok = %v, want 2", n)
	}

	// The server enforces the separation, whatever the worker does: the worker's own
	// credentials cannot write into a partner bucket, and the SFMC role cannot write into TMOL's.
	body := []byte("not an export")
	put := func(client *s3.Client, bucket, key string) error {
		_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)})
		return err
	}
	base := credentials.NewStaticCredentialsProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], "")
	stsClient := sts.New(sts.Options{Region: env["AWS_REGION"], Credentials: base, BaseEndpoint: aws.String(env["AWS_ENDPOINT_URL_STS"])})
	out, err := stsClient.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(env["SFMC_ROLE_ARN"]), RoleSessionName: aws.String("e2e-direct"), ExternalId: aws.String("vf-export-e2e-sfmc")})
	if err != nil {
		t.Fatalf("assume the SFMC role directly: %v", err)
	}
	sfmcCreds := credentials.NewStaticCredentialsProvider(aws.ToString(out.Credentials.AccessKeyId), aws.ToString(out.Credentials.SecretAccessKey), aws.ToString(out.Credentials.SessionToken))
	client := func(creds aws.CredentialsProvider) *s3.Client {
		return s3.New(s3.Options{Region: env["AWS_REGION"], Credentials: creds, BaseEndpoint: aws.String(env["AWS_ENDPOINT_URL_S3"]), UsePathStyle: true})
	}
	for _, tc := range []struct {
		who, bucket string
		creds       aws.CredentialsProvider
		allowed     bool
	}{
		{"worker base credentials", env["SFMC_BUCKET"], base, false},
		{"worker base credentials", env["TMOL_BUCKET"], base, false},
		{"SFMC role", env["TMOL_BUCKET"], sfmcCreds, false},
		{"SFMC role", env["SFMC_BUCKET"], sfmcCreds, true}, // the control: the role itself works
	} {
		key := d.prefix + "direct-" + stacktest.RandomID()
		err := put(client(tc.creds), tc.bucket, key)
		var api smithy.APIError
		switch {
		case tc.allowed && err != nil:
			t.Errorf("%s -> s3://%s: %v, want allowed", tc.who, tc.bucket, err)
		case !tc.allowed && (!errors.As(err, &api) || api.ErrorCode() != "AccessDenied"):
			t.Errorf("%s -> s3://%s: %v, want AccessDenied", tc.who, tc.bucket, err)
		}
		if !tc.allowed {
			if keys := d.keysUnder(t, tc.bucket, key); len(keys) != 0 {
				t.Errorf("%s -> s3://%s: %v written", tc.who, tc.bucket, keys)
			}
		}
	}
}

// largeRegistrations returns n registrations of campaign whose tags hold incompressible text,
// so that a few thousand rows make an object of several parts.
func largeRegistrations(campaign string, n, tagBytes int) []any {
	r := rand.New(rand.NewPCG(uint64(n), uint64(tagBytes)))
	base := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	noise := make([]byte, tagBytes*3/4)
	docs := make([]any, n)
	for i := range n {
		doc := fixtures.Registration(r, campaign, i, base)
		for j := range noise {
			noise[j] = byte(r.Uint32())
		}
		for k, e := range doc {
			if e.Key == "tags" {
				doc[k].Value = bson.A{base64.RawURLEncoding.EncodeToString(noise)}
			}
		}
		docs[i] = doc
	}
	return docs
}

// With credentials that last a shorter time than the upload, the upload of several parts
// completes, because the credentials were refreshed between its parts; the object passes
// the server's checksum validation.
//
// Why not a real 2-second session: SeaweedFS, like AWS, refuses DurationSeconds below 900, and
// a shorter session would take the shared stack restarted with STACK_STS_MAX_SESSION_LENGTH,
// breaking every test running on it. So the destination asks for 15-minute sessions and
// refreshes them 14m58s early (refresh_before): the SDK's CredentialsCache treats each set of
// credentials as expired 2 seconds after STS issued it, which is the code path of a real
// expiry (the cache finds the credentials expired and calls AssumeRole again before the next
// request is signed). The proof is in the requests: the parts of the one multipart upload are
// signed with different keys, each issued by an AssumeRole call the recorder saw.
func TestCredentialsRefreshedDuringLongUpload(t *testing.T) {
	t.Parallel()
	d := setupDestinations(t, 1)
	campaign := "cmp-refresh-" + stacktest.RandomID()
	// 4,500 rows of about 4 KB of incompressible text: 14 MB of gzip, 3 parts of 5 MiB.
	if _, err := d.db.Collection("registrations").InsertMany(context.Background(), largeRegistrations(campaign, 4500, 4000)); err != nil {
		t.Fatal(err)
	}
	d.dests["sfmc"]["session_duration"] = "15m"
	d.dests["sfmc"]["refresh_before"] = "14m58s"
	// FerretDB reads these rows at about 1 MB/s, so each part takes seconds to fill, longer than
	// a session lasts.
	p := d.start(t, map[string]string{"S3_PART_SIZE_MB": "5"})

	id := "e2e-refresh-" + stacktest.RandomID()
	started := time.Now()
	d.send(t, jobBody(t, jobs.Message{ExportID: id, Kind: "registrations", Destination: "sfmc", Params: json.RawMessage(fmt.Sprintf(`{"campaign_id":%q}`, campaign))}))
	key := fmt.Sprintf("%sregistrations/%s/%s.csv.gz", d.prefix, campaign, id)
	c := d.checkManifest(t, d.st.Env["SFMC_BUCKET"], key, id, "registrations", "sfmc", encode.FormatCSV)
	took := time.Since(started)
	if c.Manifest.Rows != 4500 || c.Manifest.Parts < 3 {
		t.Fatalf("manifest: %d rows in %d parts, want 4500 rows in at least 3 parts", c.Manifest.Rows, c.Manifest.Parts)
	}

	role := d.st.Env["SFMC_ROLE_ARN"]
	issued := map[string]bool{}
	for _, call := range d.rec.assumeCalls(role) {
		if call.Status != http.StatusOK || call.Issued == "" {
			t.Errorf("AssumeRole answered %d", call.Status)
		}
		if call.Form.Get("DurationSeconds") != "900" || call.Form.Get("ExternalId") != "vf-export-e2e-sfmc" {
			t.Errorf("AssumeRole form %v", call.Form)
		}
		issued[call.Issued] = true
	}
	partKeys := map[string]bool{}
	var parts []string
	for _, call := range d.rec.bucketCalls(d.st.Env["SFMC_BUCKET"]) {
		if call.Method == http.MethodPut && strings.Contains(call.Query, "partNumber=") {
			parts = append(parts, call.AccessKey)
			partKeys[call.AccessKey] = true
			if !issued[call.AccessKey] {
				t.Errorf("part signed with %q, not a key of the role", call.AccessKey)
			}
		}
	}
	t.Logf("upload of %d bytes in %d parts took %s; %d AssumeRole calls; parts signed with %d keys: %v",
		c.Manifest.BytesCompressed, c.Manifest.Parts, took.Round(time.Second), len(issued), len(partKeys), parts)
	if len(partKeys) < 2 {
		t.Errorf("all %d parts were signed with the same credentials: no refresh during the upload", len(parts))
	}
	// How many sessions an upload spans depends on how fast this machine fills its parts; what
	// matters is that it took more than one, each from the role, and that parts used them.
	if len(issued) < 2 {
		t.Errorf("%d AssumeRole calls during a %s upload of 2-second credentials", len(issued), took.Round(time.Second))
	}
	if n := stacktest.Sum(p.Metrics(t), "export_assume_role_total", map[string]string{"destination": "sfmc", "result": "ok"}); int(n) != len(issued) {
		t.Errorf("export_assume_role_total{sfmc,ok} = %v, the recorder saw %d", n, len(issued))
	}
}

// A destination whose role the worker may not assume: the job fails permanently at its first
// attempt, its dead-letter reason names the destination and the role, and nothing is written.
func TestUnassumableRoleFailsPermanently(t *testing.T) {
	t.Parallel()
	d := setupDestinations(t, 20)
	p := d.start(t, nil)
	id := "e2e-forbidden-" + stacktest.RandomID()
	d.send(t, jobBody(t, jobs.Message{ExportID: id, Kind: "registrations", Destination: "forbidden", Params: json.RawMessage(fmt.Sprintf(`{"campaign_id":%q}`, fixtures.Campaigns[1]))}))

	got := d.drainDLQ(t, 1, 60*time.Second)
	if len(got) != 1 {
		t.Fatalf("dead-letter queue has %d messages, want 1", len(got))
	}
	m := got[0]
	role := d.st.Env["FORBIDDEN_ROLE_ARN"]
	if m.Attrs["reason"] != "access_denied" || m.Attrs["receive_count"] != "1" || m.Attrs["export_id"] != id {
		t.Errorf("attributes %v, want reason access_denied after one receive", m.Attrs)
	}
	for _, want := range []string{`destination "forbidden"`, role} {
		if !strings.Contains(m.Attrs["error"], want) {
			t.Errorf("error %q does not name %s", m.Attrs["error"], want)
		}
	}
	t.Logf("dead-letter error: %s", m.Attrs["error"])
	bucket := d.st.Env["SFMC_BUCKET"]
	if keys := d.keysUnder(t, bucket, d.prefix); len(keys) != 0 {
		t.Errorf("written: %v", keys)
	}
	if n := d.uploadsUnder(t, bucket, d.prefix); n != 0 {
		t.Errorf("%d multipart uploads left", n)
	}
	calls := d.rec.assumeCalls(role)
	if len(calls) == 0 || calls[0].Status < 400 {
		t.Errorf("AssumeRole calls %+v, want refused ones", calls)
	}
	eventually(t, 10*time.Second, "assume-role error counted", func() bool {
		return stacktest.Sum(p.Metrics(t), "export_assume_role_total", map[string]string{"destination": "forbidden", "result": "error"}) >= 1
	})
	if n := stacktest.Sum(p.Metrics(t), "export_jobs_total", map[string]string{"destination": "forbidden", "outcome": "failed_permanent"}); n != 1 {
		t.Errorf("export_jobs_total{forbidden,failed_permanent} = %v", n)
	}
}

// Job messages that try to choose where bytes go are refused, each with a reason and an error
// naming what was wrong, and nothing is written anywhere.
func TestEscapeAttemptsAreRefused(t *testing.T) {
	t.Parallel()
	d := setupDestinations(t, 20)
	d.start(t, nil)
	r := stacktest.RandomID()
	campaign := fixtures.Campaigns[2]
	msg := func(fields string) string {
		return `{"version":1,"kind":"registrations",` + fields + `}`
	}
	attempts := []struct {
		name, body, reason, says string
	}{
		{"a bucket field", msg(`"export_id":"esc-bucket-` + r + `","destination":"sfmc","bucket":"tmol-drop","params":{"campaign_id":"` + campaign + `"}`), "malformed_message", `field "bucket": unknown field`},
		{"an absolute key field", msg(`"export_id":"esc-key-` + r + `","destination":"sfmc","key":"/tmol-drop/esc-` + r + `.csv.gz","params":{"campaign_id":"` + campaign + `"}`), "malformed_message", `field "key": unknown field`},
		{"a prefix field", msg(`"export_id":"esc-prefix-` + r + `","destination":"sfmc","prefix":"../","params":{"campaign_id":"` + campaign + `"}`), "malformed_message", `field "prefix": unknown field`},
		{"a bucket in the params", msg(`"export_id":"esc-pbucket-` + r + `","destination":"sfmc","params":{"campaign_id":"` + campaign + `","bucket":"tmol-drop"}`), "invalid_params", `field "params.bucket": unknown field`},
		{"../ in the campaign variable", msg(`"export_id":"esc-campaign-` + r + `","destination":"sfmc","params":{"campaign_id":"../../tmol-drop/esc-` + r + `"}`), "invalid_params", `field "params.campaign_id"`},
		{"../ in the export id variable", msg(`"export_id":"../../tmol-drop/esc-` + r + `","destination":"sfmc","params":{"campaign_id":"` + campaign + `"}`), "invalid_message", `field "export_id"`},
		{"an absolute export id", msg(`"export_id":"/tmol-drop/esc-` + r + `","destination":"sfmc","params":{"campaign_id":"` + campaign + `"}`), "invalid_message", `field "export_id"`},
		{"an unknown destination", msg(`"export_id":"esc-unknown-` + r + `","destination":"nowhere","params":{"campaign_id":"` + campaign + `"}`), "unknown_destination", `unknown destination "nowhere"`},
		{"a path as destination", msg(`"export_id":"esc-dpath-` + r + `","destination":"../tmol","params":{"campaign_id":"` + campaign + `"}`), "invalid_message", `field "destination"`},
		{"a bucket URL as destination", msg(`"export_id":"esc-durl-` + r + `","destination":"s3://tmol-drop/esc","params":{"campaign_id":"` + campaign + `"}`), "invalid_message", `field "destination"`},
	}
	for _, a := range attempts {
		d.send(t, a.body)
	}
	got := d.drainDLQ(t, len(attempts), 90*time.Second)
	byBody := map[string]dlqMessage{}
	for _, m := range got {
		byBody[m.Body] = m
	}
	for _, a := range attempts {
		m, ok := byBody[a.body]
		switch {
		case !ok:
			t.Errorf("%s: not dead-lettered", a.name)
		case m.Attrs["reason"] != a.reason || !strings.Contains(m.Attrs["error"], a.says):
			t.Errorf("%s: reason %q, error %q; want %q saying %q", a.name, m.Attrs["reason"], m.Attrs["error"], a.reason, a.says)
		default:
			t.Logf("refused %-30s %-20s %s", a.name+":", m.Attrs["reason"], m.Attrs["error"])
		}
	}
	for _, bucket := range []string{d.st.Env["SFMC_BUCKET"], d.st.Env["TMOL_BUCKET"], d.st.Env["EXPORT_BUCKET"]} {
		pages := s3.NewListObjectsV2Paginator(d.st.S3, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
		for pages.HasMorePages() {
			out, err := pages.NextPage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range out.Contents {
				if strings.Contains(aws.ToString(o.Key), r) {
					t.Errorf("s3://%s/%s was written", bucket, aws.ToString(o.Key))
				}
			}
		}
	}
	if len(d.rec.bucketCalls(d.st.Env["TMOL_BUCKET"])) != 0 {
		t.Error("the worker sent requests to the TMOL bucket")
	}
}
