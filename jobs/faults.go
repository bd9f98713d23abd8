package jobs

import (
	"context"
	"time"
)

// SlowSource delays every document of src by d, honouring ctx. Fault-injection tests use it to
// make an export outlive a visibility timeout, a drain deadline or a credential lifetime.
func SlowSource(src Source, d time.Duration) Source { return &slowSource{Source: src, d: d} }

type slowSource struct {
	Source
	d   time.Duration
	err error
}

func (s *slowSource) Next(ctx context.Context) bool {
	t := time.NewTimer(s.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		s.err = ctx.Err()
		return false
	case <-t.C:
	}
	return s.Source.Next(ctx)
}

func (s *slowSource) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.Source.Err()
}
