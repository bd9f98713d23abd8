// Package jobs is the domain of export-service: the export job message and its validation, the
// export kinds (what can be exported and how the query is built), and the streaming pipeline
// source -> encoder -> gzip -> sink. The encoders themselves and the formats they write are
// package encode's.
//
// It knows nothing about SQS or S3: the worker feeds it messages and the sink package provides
// where the bytes go.
package jobs
