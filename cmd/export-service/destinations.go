package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/rs/zerolog"

	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/sink"
	"github.com/verifiedfan/export-service/worker"
)

// loadDestinations reads the destinations of EXPORT_DESTINATIONS_FILE (or EXPORT_DESTINATIONS)
// and adds "internal" from EXPORT_BUCKET and EXPORT_KEY_PREFIX. The file may describe
// "internal" too (infra writes it with the bucket, prefix and region); it must then agree with
// those variables, and its other settings (region, sse, key template, ...) apply.
func loadDestinations(c config) (map[string]sink.DestinationConfig, error) {
	var data []byte
	source := ""
	switch {
	case c.DestinationsFile != "" && c.DestinationsJSON != "":
		return nil, errors.New("set EXPORT_DESTINATIONS_FILE or EXPORT_DESTINATIONS, not both")
	case c.DestinationsFile != "":
		source = "EXPORT_DESTINATIONS_FILE " + c.DestinationsFile
		b, err := os.ReadFile(c.DestinationsFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		data = b
	case c.DestinationsJSON != "":
		source, data = "EXPORT_DESTINATIONS", []byte(c.DestinationsJSON)
	}
	dests := map[string]sink.DestinationConfig{}
	if data != nil {
		var err error
		if dests, err = sink.ParseDestinations(data); err != nil {
			return nil, fmt.Errorf("%s:\n%w", source, err)
		}
	}
	if c.Bucket == "" {
		return dests, nil // EXPORT_BUCKET is required: reported already
	}
	internal, ok := dests[jobs.DefaultDestination]
	if ok {
		var errs []error
		if internal.Bucket != c.Bucket {
			errs = append(errs, fmt.Errorf("%s: destination %q: bucket %q differs from EXPORT_BUCKET %q", source, jobs.DefaultDestination, internal.Bucket, c.Bucket))
		}
		if internal.Prefix != c.KeyPrefix {
			errs = append(errs, fmt.Errorf("%s: destination %q: prefix %q differs from EXPORT_KEY_PREFIX %q", source, jobs.DefaultDestination, internal.Prefix, c.KeyPrefix))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	} else {
		// The bucket name is left to S3 to judge, as before destinations existed; the prefix
		// must pass the checks every object key passes.
		internal = sink.DestinationConfig{Bucket: c.Bucket, Prefix: c.KeyPrefix}.WithDefaults(jobs.DefaultDestination)
		if err := jobs.ValidateKeyPrefix(c.KeyPrefix); err != nil {
			return nil, fmt.Errorf("EXPORT_KEY_PREFIX: %w", err)
		}
	}
	dests[jobs.DefaultDestination] = internal
	return dests, nil
}

// buildDestinations makes one sink per destination: its own S3 client in the destination's
// region, signed, for a destination with a role, by that role's temporary credentials (one
// AssumeRole provider and cache per destination, reused by every job and refreshed before
// expiry), else by the worker's own. Every AssumeRole call is counted in
// export_assume_role_total.
func buildDestinations(awsCfg aws.Config, cfg config, metrics *worker.Metrics, log zerolog.Logger) (map[string]jobs.Destination, *sink.BufferPool) {
	onAssumeRole := func(dest string, err error) {
		result := "ok"
		if err != nil {
			result = "error"
			log.Warn().Err(err).Str("destination", dest).Msg("AssumeRole failed")
		}
		metrics.AssumeRole.WithLabelValues(dest, result).Inc()
	}
	// One budget of part buffers for every sink of the process: jobs wait on it instead of
	// growing past the container's memory (made after GOMEMLIMIT was applied).
	buffers := sink.NewBufferPool(int64(cfg.BufferBudgetMB) << 20)
	log.Info().Int64("bytes", buffers.Limit()).Msg("part buffer budget")
	out := make(map[string]jobs.Destination, len(cfg.Destinations))
	for name, d := range cfg.Destinations {
		region := d.Region
		if region == "" {
			region = awsCfg.Region
		}
		opts := sink.S3Options{
			PartSize:            int64(cfg.PartSizeMB) << 20,
			ExpectedBucketOwner: d.ExpectedBucketOwner,
			SSE:                 d.SSE,
			KMSKeyID:            d.KMSKeyID,
			StorageClass:        d.StorageClass,
			Checksum:            d.Checksum,
			Destination:         name,
			Buffers:             buffers,
		}
		var creds *aws.CredentialsCache
		if d.RoleARN != "" {
			// STS in the destination's region; it signs with the worker's own credentials.
			stsClient := sts.NewFromConfig(awsCfg, func(o *sts.Options) { o.Region = region })
			creds = sink.NewAssumeRoleCredentials(stsClient, sink.AssumeRole{
				Destination:   name,
				RoleARN:       d.RoleARN,
				ExternalID:    d.ExternalID,
				SessionName:   d.SessionName,
				Duration:      d.SessionDuration.Duration(),
				RefreshBefore: d.RefreshBefore.Duration(),
				OnCall:        onAssumeRole,
			})
			opts.RoleARN, opts.Credentials = d.RoleARN, creds
		}
		client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
			o.Region = region
			o.UsePathStyle = cfg.S3PathStyle
			if creds != nil {
				o.Credentials = creds
			}
		})
		keys, err := jobs.ParseKeyTemplate(d.KeyTemplate)
		if err != nil {
			panic(fmt.Sprintf("destination %q: key template validated at load: %v", name, err))
		}
		out[name] = jobs.Destination{Name: name, Bucket: d.Bucket, Prefix: d.Prefix, Keys: keys, Sink: sink.NewS3(client, d.Bucket, opts)}
		ev := log.Info().Str("destination", name).Str("bucket", d.Bucket).Str("prefix", d.Prefix).Str("region", region).Str("key_template", d.KeyTemplate)
		if d.RoleARN != "" {
			ev = ev.Str("role_arn", d.RoleARN).Str("session_name", d.SessionName).Dur("session_duration", d.SessionDuration.Duration())
		}
		ev.Msg("destination configured")
	}
	return out, buffers
}

// resultsNotifier sends completion notices to EXPORT_RESULTS_QUEUE_URL, if set.
func resultsNotifier(cfg config, client *sqs.Client, metrics *worker.Metrics) jobs.Notifier {
	if cfg.ResultsQueueURL == "" {
		return nil
	}
	return &sink.ResultsQueue{Client: client, URL: cfg.ResultsQueueURL, OnSend: func(err error) {
		result := "ok"
		if err != nil {
			result = "error"
		}
		metrics.SQSRequests.WithLabelValues("send_result", result).Inc()
	}}
}
