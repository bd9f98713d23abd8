package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
)

// AssumeRole configures the temporary credentials of a destination in another account.
type AssumeRole struct {
	// Destination names the destination, in errors and in OnCall.
	Destination string
	RoleARN     string
	// ExternalID is sent with every AssumeRole call; the partner's trust policy checks it.
	ExternalID string
	// SessionName is the role session name (it appears in the partner's CloudTrail).
	SessionName string
	// Duration is the session lifetime asked for (AWS: 15m to the role's maximum, 1h by default).
	Duration time.Duration
	// RefreshBefore is how long before expiry the credentials are replaced: every request,
	// each part of a multipart upload included, is signed with credentials valid for at least
	// this long, so an upload outlives any number of sessions.
	RefreshBefore time.Duration
	// OnCall, if set, is called after every AssumeRole call with its error (nil on success).
	OnCall func(destination string, err error)
}

// NewAssumeRoleCredentials returns the credentials of a destination's role: an
// stscreds.AssumeRoleProvider, calling STS with client (which signs with the worker's own
// credentials), inside a CredentialsCache that all of the destination's requests share.
func NewAssumeRoleCredentials(client stscreds.AssumeRoleAPIClient, c AssumeRole) *aws.CredentialsCache {
	p := stscreds.NewAssumeRoleProvider(client, c.RoleARN, func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = c.SessionName
		if c.ExternalID != "" {
			o.ExternalID = aws.String(c.ExternalID)
		}
		if c.Duration > 0 {
			o.Duration = c.Duration
		}
	})
	return aws.NewCredentialsCache(&assumeRoleProvider{p: p, c: c}, func(o *aws.CredentialsCacheOptions) {
		// No jitter: one cache per destination per process calls STS about once a session.
		o.ExpiryWindow = c.RefreshBefore
	})
}

type assumeRoleProvider struct {
	p *stscreds.AssumeRoleProvider
	c AssumeRole
}

func (a *assumeRoleProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, err := a.p.Retrieve(ctx)
	if a.c.OnCall != nil {
		a.c.OnCall(a.c.Destination, err)
	}
	if err != nil {
		return creds, &AssumeRoleError{Destination: a.c.Destination, RoleARN: a.c.RoleARN, Err: err}
	}
	return creds, nil
}

// AssumeRoleError is a failed AssumeRole call of a destination's credentials. Classify makes
// it permanent when STS refused (access denied, invalid parameters) and leaves it retryable
// when STS throttled or was unavailable.
type AssumeRoleError struct {
	Destination string
	RoleARN     string
	Err         error
}

func (e *AssumeRoleError) Error() string {
	return fmt.Sprintf("sink: destination %q: assume role %s: %v", e.Destination, e.RoleARN, e.Err)
}

func (e *AssumeRoleError) Unwrap() error { return e.Err }
