package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/verifiedfan/export-service/internal/buildinfo"
	"github.com/verifiedfan/export-service/jobs/encode"
)

// ManifestVersion is the version of the manifest document.
const ManifestVersion = 1

// Manifest describes a completed export. It is written next to the data object as
// <key>.manifest.json once the data object is complete, so its presence means the export is
// complete; a partner can check the object against it (size, SHA-256, S3 checksum, rows).
type Manifest struct {
	ManifestVersion int           `json:"manifest_version"`
	ExportID        string        `json:"export_id"`
	Kind            string        `json:"kind"`
	Format          encode.Format `json:"format"`
	Destination     string        `json:"destination"`
	Bucket          string        `json:"bucket"`
	Key             string        `json:"key"`
	// Params are the job's parameters as the message gave them.
	Params      json.RawMessage `json:"params"`
	RequestedBy string          `json:"requested_by,omitempty"`
	RequestedAt *time.Time      `json:"requested_at,omitempty"`
	// Columns are the column names, in order (the CSV header, the NDJSON keys).
	Columns           []string `json:"columns"`
	Rows              int64    `json:"rows"`
	BytesUncompressed int64    `json:"bytes_uncompressed"`
	// BytesCompressed is the object's size.
	BytesCompressed int64  `json:"bytes_compressed"`
	ContentType     string `json:"content_type"`
	ContentEncoding string `json:"content_encoding"`
	// SHA256 is the hex SHA-256 of the object's bytes (the gzip stream). An export split into
	// segments has none (see Segments; S3Checksum covers the whole object).
	SHA256 string `json:"sha256,omitempty"`
	// S3Checksum is the object's checksum as S3 stores it (for example a full-object CRC64NVME).
	S3Checksum *ManifestChecksum `json:"s3_checksum,omitempty"`
	ETag       string            `json:"etag,omitempty"`
	Parts      int               `json:"parts"`
	StartedAt  time.Time         `json:"started_at"`
	FinishedAt time.Time         `json:"finished_at"`
	// ServiceVersion is the build of export-service that wrote the export.
	ServiceVersion string `json:"service_version"`
	// Segments are the segments of an export split over the fleet, in order: rows, bytes
	// and SHA-256 of each one's bytes (they follow one another in the object).
	Segments []SegmentDone `json:"segments,omitempty"`
}

// ManifestChecksum is an S3 checksum: the algorithm and the base64 value of its
// x-amz-checksum-* header.
type ManifestChecksum struct {
	Algorithm string `json:"algorithm"`
	Type      string `json:"type"`
	Value     string `json:"value"`
}

// ManifestKey is the key of the manifest of the object at key.
func ManifestKey(key string) string { return key + ManifestSuffix }

// NewManifest describes the completed job whose run gave res.
func NewManifest(job *Job, res Result) *Manifest {
	cols := make([]string, len(job.Plan.Columns))
	for i, c := range job.Plan.Columns {
		cols[i] = c.Header
	}
	params := job.Message.Params
	var compact bytes.Buffer
	if json.Compact(&compact, params) == nil {
		params = compact.Bytes()
	}
	m := &Manifest{
		ManifestVersion:   ManifestVersion,
		ExportID:          job.Message.ExportID,
		Kind:              job.Plan.Kind.Name,
		Format:            job.Message.Format,
		Destination:       job.Destination.Name,
		Bucket:            job.Destination.Bucket,
		Key:               job.Key,
		Params:            params,
		RequestedBy:       job.Message.RequestedBy,
		Columns:           cols,
		Rows:              res.Stats.Rows,
		BytesUncompressed: res.Stats.BytesUncompressed,
		BytesCompressed:   res.Stats.BytesCompressed,
		ContentType:       job.Message.Format.ContentType(),
		ContentEncoding:   "gzip",
		SHA256:            res.Stats.SHA256,
		ETag:              res.Written.ETag,
		Parts:             res.Written.Parts,
		StartedAt:         res.Started,
		FinishedAt:        res.Finished,
		ServiceVersion:    buildinfo.String(),
	}
	if res.Written.Bucket != "" {
		m.Bucket = res.Written.Bucket
	}
	if !job.RequestedAt.IsZero() {
		t := job.RequestedAt.UTC()
		m.RequestedAt = &t
	}
	if res.Written.Checksum != "" {
		m.S3Checksum = &ManifestChecksum{Algorithm: res.Written.ChecksumAlgorithm, Type: "FULL_OBJECT", Value: res.Written.Checksum}
	}
	return m
}

// writeManifest stores m at ManifestKey(m.Key) through the job's sink; fence, if not nil, is
// checked right before it is committed.
func writeManifest(ctx context.Context, sink Sink, m *Manifest, fence func(context.Context) error) (Written, error) {
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Written{}, fmt.Errorf("jobs: encode the manifest of export %s: %w", m.ExportID, err)
	}
	body = append(body, '\n')
	obj := Object{
		Key:          ManifestKey(m.Key),
		ContentType:  "application/json",
		Metadata:     map[string]string{"export-id": m.ExportID, "kind": m.Kind, "rows": fmt.Sprint(m.Rows), "sha256": m.SHA256},
		BeforeCommit: fence,
	}
	w, err := sink.Put(ctx, obj, bytes.NewReader(body))
	if err != nil {
		return w, fmt.Errorf("jobs: write manifest %s: %w", obj.Key, err)
	}
	return w, nil
}
