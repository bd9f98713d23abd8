// Package encode writes an export's documents in its output format: the formats (CSV, NDJSON)
// and their options, the columns an export writes, the CSV and NDJSON encoders that work on
// raw BSON without decoding it, the one-pass matcher of the columns' dotted paths, the text of
// each BSON value (see the README for the representation) and relaxed Extended JSON v2.
//
// It is a leaf: it imports nothing of this module. It changes when the output formats
// change, not when the requests (jobs: the message, the kinds) or the persistence (the ledger)
// do, and its golden and fuzz tests pin exactly that.
package encode
