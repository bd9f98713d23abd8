package sink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/verifiedfan/export-service/jobs"
)

// DestinationConfig is one destination of the destinations file (EXPORT_DESTINATIONS_FILE,
// /etc/vf-export/destinations.json, written by infra/terraform from var.destinations), a JSON
// object of name -> settings:
//
//	{"sfmc": {"bucket": "sfmc-drop", "prefix": "verifiedfan/", "region": "us-east-1",
//	          "role_arn": "arn:aws:iam::555566667777:role/sfmc-export", "external_id": "vf-export-prod1",
//	          "expected_bucket_owner": "555566667777", "sse": "aws:kms"}}
//
// A job names a destination; it can never name a bucket or a key.
type DestinationConfig struct {
	// Bucket is the bucket objects are written to (required).
	Bucket string `json:"bucket"`
	// Prefix is prepended to every key (usually ending with /).
	Prefix string `json:"prefix,omitempty"`
	// Region is the bucket's region (default: AWS_REGION). STS is called in it too.
	Region string `json:"region,omitempty"`
	// RoleARN is the role assumed to write (default: none, the worker's own credentials).
	RoleARN string `json:"role_arn,omitempty"`
	// ExternalID is sent with AssumeRole (only with role_arn).
	ExternalID string `json:"external_id,omitempty"`
	// SessionName is the role session name (only with role_arn; default "vf-export-<name>").
	SessionName string `json:"session_name,omitempty"`
	// SessionDuration is the role session lifetime, 15m..12h (default 1h), as "1h" or seconds.
	SessionDuration Duration `json:"session_duration,omitzero"`
	// RefreshBefore is how long before expiry credentials are replaced, less than the session
	// (default 5m).
	RefreshBefore Duration `json:"refresh_before,omitzero"`
	// ExpectedBucketOwner is the account id that must own the bucket.
	ExpectedBucketOwner string `json:"expected_bucket_owner,omitempty"`
	// SSE is "AES256" or "aws:kms" (default: the bucket's default encryption).
	SSE string `json:"sse,omitempty"`
	// KMSKeyID is the KMS key of sse "aws:kms" (default: the account's aws/s3 key).
	KMSKeyID string `json:"kms_key_id,omitempty"`
	// StorageClass is the objects' storage class (default STANDARD).
	StorageClass string `json:"storage_class,omitempty"`
	// KeyTemplate is the object key after the prefix (default jobs.DefaultKeyTemplate).
	KeyTemplate string `json:"key_template,omitempty"`
	// Checksum is the S3 full-object checksum: CRC32C (default) or CRC64NVME.
	Checksum string `json:"checksum,omitempty"`
}

// Defaults of DestinationConfig.
const (
	DefaultSessionDuration = time.Hour
	DefaultRefreshBefore   = 5 * time.Minute
)

// Duration is a JSON duration: a Go duration string ("15m", "1h") or a number of seconds.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		*d = Duration(time.Duration(n) * time.Second)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"1h\" or a number of seconds, got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as \"1h\" or a number of seconds, got %q", s)
	}
	*d = Duration(v)
	return nil
}

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

var (
	destinationNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
	bucketPattern          = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	regionPattern          = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]$`)
	roleARNPattern         = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$`)
	externalIDPattern      = regexp.MustCompile(`^[A-Za-z0-9+=,.@:/_-]+$`)
	sessionNamePattern     = regexp.MustCompile(`^[A-Za-z0-9+=,.@_-]{2,64}$`)
	accountPattern         = regexp.MustCompile(`^[0-9]{12}$`)
	kmsKeyPattern          = regexp.MustCompile(`^[A-Za-z0-9:/_-]{1,1000}$`)
)

// ParseDestinations decodes and validates a destinations document strictly (unknown fields are
// errors: a misspelt "external_id" must not go unnoticed). Every problem is reported at once.
// Defaults are filled in.
func ParseDestinations(data []byte) (map[string]DestinationConfig, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var raw map[string]DestinationConfig
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("destinations: not a JSON object of name -> settings: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("destinations: unexpected data after the JSON object")
	}
	if raw == nil {
		return nil, errors.New("destinations: not a JSON object of name -> settings")
	}
	var errs []error
	out := make(map[string]DestinationConfig, len(raw))
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		d := raw[name].WithDefaults(name)
		if err := d.Validate(name); err != nil {
			errs = append(errs, err)
		}
		out[name] = d
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// WithDefaults fills in the defaults of the destination called name.
func (d DestinationConfig) WithDefaults(name string) DestinationConfig {
	if d.RoleARN != "" {
		if d.SessionName == "" {
			d.SessionName = "vf-export-" + name
		}
		if d.SessionDuration == 0 {
			d.SessionDuration = Duration(DefaultSessionDuration)
		}
		if d.RefreshBefore == 0 {
			d.RefreshBefore = Duration(min(DefaultRefreshBefore, time.Duration(d.SessionDuration)/2))
		}
	}
	if d.KeyTemplate == "" {
		d.KeyTemplate = jobs.DefaultKeyTemplate
	}
	if d.Checksum == "" {
		d.Checksum = ChecksumCRC32C
	}
	return d
}

// Validate checks one destination; its error names the destination and lists every problem.
func (d DestinationConfig) Validate(name string) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !destinationNamePattern.MatchString(name) {
		bad("name: want 1-64 characters of a-z 0-9 _ - starting with a letter")
	}
	switch {
	case d.Bucket == "":
		bad("bucket: required")
	case !bucketPattern.MatchString(d.Bucket) || strings.Contains(d.Bucket, ".."):
		bad("bucket: %q is not a bucket name", d.Bucket)
	}
	if err := jobs.ValidateKeyPrefix(d.Prefix); err != nil {
		bad("prefix: %v", err)
	}
	if d.Region != "" && !regionPattern.MatchString(d.Region) {
		bad("region: %q is not a region", d.Region)
	}
	if d.RoleARN == "" {
		for field, v := range map[string]bool{"external_id": d.ExternalID != "", "session_name": d.SessionName != "", "session_duration": d.SessionDuration != 0, "refresh_before": d.RefreshBefore != 0} {
			if v {
				bad("%s: only with role_arn", field)
			}
		}
	} else {
		if !roleARNPattern.MatchString(d.RoleARN) {
			bad("role_arn: %q is not an IAM role ARN", d.RoleARN)
		}
		if d.ExternalID != "" && (len(d.ExternalID) < 2 || len(d.ExternalID) > 1224 || !externalIDPattern.MatchString(d.ExternalID)) {
			bad("external_id: want 2-1224 characters of A-Z a-z 0-9 + = , . @ : / _ -")
		}
		if !sessionNamePattern.MatchString(d.SessionName) {
			bad("session_name: %q: want 2-64 characters of A-Z a-z 0-9 + = , . @ _ -", d.SessionName)
		}
		if sd := time.Duration(d.SessionDuration); sd < 15*time.Minute || sd > 12*time.Hour {
			bad("session_duration: %s is outside 15m..12h (the limits of STS)", sd)
		}
		if rb := time.Duration(d.RefreshBefore); rb < 0 || rb >= time.Duration(d.SessionDuration) {
			bad("refresh_before: %s must be at least 0 and less than session_duration (%s)", rb, time.Duration(d.SessionDuration))
		}
	}
	if d.ExpectedBucketOwner != "" && !accountPattern.MatchString(d.ExpectedBucketOwner) {
		bad("expected_bucket_owner: %q is not a 12-digit account id", d.ExpectedBucketOwner)
	}
	switch d.SSE {
	case "", string(s3types.ServerSideEncryptionAes256), string(s3types.ServerSideEncryptionAwsKms):
	default:
		bad("sse: %q is not AES256 or aws:kms", d.SSE)
	}
	switch {
	case d.KMSKeyID == "":
	case d.SSE != string(s3types.ServerSideEncryptionAwsKms):
		bad("kms_key_id: only with sse \"aws:kms\"")
	case !kmsKeyPattern.MatchString(d.KMSKeyID):
		bad("kms_key_id: %q is not a KMS key id, alias or ARN", d.KMSKeyID)
	}
	if d.StorageClass != "" && !slices.Contains(s3types.StorageClass("").Values(), s3types.StorageClass(d.StorageClass)) {
		bad("storage_class: %q is not an S3 storage class", d.StorageClass)
	}
	if d.Checksum != ChecksumCRC32C && d.Checksum != ChecksumCRC64NVME {
		bad("checksum: %q is not CRC32C or CRC64NVME", d.Checksum)
	}
	if _, err := jobs.ParseKeyTemplate(d.KeyTemplate); err != nil {
		bad("key_template: %v", err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("destination %q: %w", name, errors.Join(errs...))
	}
	return nil
}
