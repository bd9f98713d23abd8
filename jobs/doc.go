// Package jobs is the domain of export-service: the export job message and its validation, the
// export kinds (what can be exported and how the query is built), the encoders (CSV, NDJSON) that
// work on raw BSON, and the streaming pipeline source -> encoder -> gzip -> sink.
//
// It knows nothing about SQS or S3: the worker feeds it messages and the sink package provides
// where the bytes go.
package jobs
