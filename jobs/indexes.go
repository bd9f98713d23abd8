package jobs

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// CreateIndexes creates every index the registry's kinds need. Creating an index that exists
// with the same keys and name is a no-op, so this is safe to run before every deploy. It
// returns the "collection.index" names it ensured and every failure.
func CreateIndexes(ctx context.Context, db *mongo.Database, reg *Registry) ([]string, error) {
	var done []string
	var errs []error
	for _, k := range reg.Kinds() {
		d, e := CreateCollectionIndexes(ctx, db.Collection(k.Collection), k.Indexes)
		done, errs = append(done, d...), append(errs, e...)
	}
	return done, errors.Join(errs...)
}

// CreateCollectionIndexes creates the indexes ixs on coll (idempotent). It returns the
// "collection.index" names it ensured and the failure of each one it did not.
func CreateCollectionIndexes(ctx context.Context, coll *mongo.Collection, ixs []Index) ([]string, []error) {
	var done []string
	var errs []error
	for _, ix := range ixs {
		keys := bson.D{}
		for _, f := range ix.Keys {
			keys = append(keys, bson.E{Key: f, Value: 1})
		}
		_, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: keys, Options: options.Index().SetName(ix.Name)})
		if err != nil {
			errs = append(errs, fmt.Errorf("jobs: create index %s on %s: %w", ix.Name, coll.Name(), err))
			continue
		}
		done = append(done, coll.Name()+"."+ix.Name)
	}
	return done, errs
}
