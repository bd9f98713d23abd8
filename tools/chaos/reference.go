package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// The identical invariant. Resumable exports promise that an object is byte for byte what an
// uninterrupted run writes: every cut of the stream depends on its bytes only, and an attempt
// that continues from a checkpoint writes the rest of that stream. After the campaign, each
// verified multipart object's export is run once more, as <export_id>-ref to the internal
// destination under a prefix of its own, on a worker of its own with the same settings and no
// faults (every proxy healed), and the two objects are compared. An export whose attempts all
// ran to the end without a resume is compared too: its object must not depend on timing,
// handovers or the number of compressors either.

// refSuffix is appended to the export id of a reference run.
const refSuffix = "-ref"

// Reference runs the reference exports on w and checks the campaign's objects against them.
// It gives them up to timeout in all.
func (c *Checker) Reference(ctx context.Context, w *Worker, jobsURL string, timeout time.Duration) error {
	byID := map[string]*Job{}
	for _, j := range c.Jobs {
		byID[j.ExportID] = j
	}
	var ids []string
	for id, v := range c.Verified {
		if v.Parts > 1 {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	if len(ids) == 0 {
		return nil
	}
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop(30 * time.Second)
	for _, id := range ids {
		ref := *byID[id]
		ref.ExportID, ref.Destination = id+refSuffix, "internal"
		if _, err := c.SQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(jobsURL), MessageBody: aws.String(ref.Body())}); err != nil {
			return fmt.Errorf("send the reference run of %s: %w", id, err)
		}
	}

	// Wait for their outcome in the ledger.
	deadline := time.Now().Add(timeout)
	entries := map[string]bson.M{}
	for {
		done := 0
		for _, id := range ids {
			var e bson.M
			err := c.DB.Collection("exports").FindOne(ctx, bson.D{{Key: "_id", Value: id + refSuffix}}).Decode(&e)
			if err == nil {
				entries[id] = e
				if st := e["status"]; st == "succeeded" || st == "failed" && e["permanent"] == true {
					done++
				}
			}
		}
		if done == len(ids) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		sleep(ctx, 2*time.Second)
	}

	for _, id := range ids {
		v := c.Verified[id]
		e := entries[id]
		if e["status"] != "succeeded" {
			c.violate("identical", id, "its reference run %s%s did not succeed within %s, without faults: ledger status %v, error %v (see %s.log)",
				id, refSuffix, timeout, e["status"], e["error"], w.Name)
			continue
		}
		bucket, _ := e["bucket"].(string)
		key, _ := e["key"].(string)
		body, err := c.get(ctx, Object{Bucket: bucket, Key: key})
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		got := hex.EncodeToString(sum[:])
		c.Counts["multipart objects compared with an uninterrupted run"]++
		if got == v.SHA256 && int64(len(body)) == v.Size {
			c.Counts["multipart objects identical to an uninterrupted run"]++
			continue
		}
		c.violate("identical", id, "the object (%d bytes, %d parts, %d resumes, SHA-256 %s) is not what an uninterrupted run writes (%s/%s: %d bytes, SHA-256 %s)%s",
			v.Size, v.Parts, v.Resumes, v.SHA256, bucket, key, len(body), got, c.firstDifference(ctx, v.Object, body))
	}
	return nil
}

// firstDifference says where an object first differs from want.
func (c *Checker) firstDifference(ctx context.Context, o Object, want []byte) string {
	body, err := c.get(ctx, o)
	if err != nil {
		return ""
	}
	n := min(len(body), len(want))
	for i := range n {
		if body[i] != want[i] {
			return fmt.Sprintf("; first different byte at offset %d", i)
		}
	}
	return fmt.Sprintf("; one is a prefix of the other (%d and %d bytes)", len(body), len(want))
}
