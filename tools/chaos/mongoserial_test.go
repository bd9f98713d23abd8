package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/stacktest"
)

// casRounds runs rounds of 8 concurrent findOneAndUpdate with one filter on a fresh document
// and returns how many rounds had more than one winner, and whether concurrent $set of two
// fields lost one of them.
func casRounds(t *testing.T, uri string, rounds int) (multiWinners int, lostUpdate bool) {
	t.Helper()
	ctx := context.Background()
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetMaxPoolSize(20))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(ctx)
	st := stacktest.New(t)
	db := st.NewDatabase(t)
	coll := c.Database(db.Name()).Collection("x")
	for r := range rounds {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: r}, {Key: "v", Value: 0}}); err != nil {
			t.Fatal(err)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for g := 1; g <= 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: r}, {Key: "v", Value: 0}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: g}}}}).Err() == nil {
					wins.Add(1)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			multiWinners++
		}
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "ab"}, {Key: "a", Value: 0}, {Key: "b", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, f := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= 100; i++ {
				_, _ = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "ab"}}, bson.D{{Key: "$set", Value: bson.D{{Key: f, Value: i}}}})
			}
		}()
	}
	wg.Wait()
	var got struct{ A, B int32 }
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "ab"}}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	return multiWinners, got.A != 100 || got.B != 100
}

// TestWriteSerializer shows FerretDB losing concurrent updates, and the serializer making
// conditional updates single-winner and $set of different fields lossless, as on MongoDB.
func TestWriteSerializer(t *testing.T) {
	env := stacktest.Env(t)
	up, err := stacktest.UpstreamAddr(env, stacktest.Mongo)
	if err != nil {
		t.Fatal(err)
	}
	direct, lost := casRounds(t, "mongodb://"+up+"/", 10)
	t.Logf("straight to FerretDB: %d of 10 rounds had several winners; lost update: %v", direct, lost)

	s, err := NewWriteSerializer(up)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	multi, lost := casRounds(t, "mongodb://"+s.Addr()+"/?directConnection=true", 10)
	if multi != 0 || lost {
		t.Fatalf("through the serializer: %d of 10 rounds had several winners; lost update: %v", multi, lost)
	}
}
