package sink

import (
	"errors"
	"fmt"

	"github.com/aws/smithy-go"

	"github.com/verifiedfan/export-service/jobs"
)

// permanentCodes are S3 error codes that retrying cannot fix.
var permanentCodes = map[string]jobs.Reason{
	"AccessDenied":          jobs.ReasonAccessDenied,
	"AllAccessDisabled":     jobs.ReasonAccessDenied,
	"InvalidAccessKeyId":    jobs.ReasonAccessDenied,
	"SignatureDoesNotMatch": jobs.ReasonAccessDenied,
	"AccountProblem":        jobs.ReasonAccessDenied,
	"NoSuchBucket":          jobs.ReasonNoSuchBucket,
	"InvalidBucketName":     jobs.ReasonNoSuchBucket,
	"InvalidStorageClass":   jobs.ReasonInvalidDestination,
	"KMS.NotFoundException": jobs.ReasonInvalidDestination,
	"KMS.DisabledException": jobs.ReasonInvalidDestination,
	"InvalidArgument":       jobs.ReasonInvalidDestination,
	"EntityTooLarge":        jobs.ReasonTooLarge,
}

// stsPermanentCodes are AssumeRole error codes that retrying cannot fix. Everything else
// (Throttling, 5xx, connection errors) is retried. Not here on purpose: ExpiredToken,
// ExpiredTokenException and RequestExpired, which say that the worker's own credentials (which
// sign the AssumeRole call) had expired, as when the instance's role credentials could not be
// refreshed during an IMDS hiccup: the worker's credentials cache fetches new ones, and the
// job succeeds when it comes back, where the dead-letter queue would lose a valid job.
var stsPermanentCodes = map[string]jobs.Reason{
	"AccessDenied":                jobs.ReasonAccessDenied,
	"InvalidClientTokenId":        jobs.ReasonAccessDenied,
	"SignatureDoesNotMatch":       jobs.ReasonAccessDenied,
	"UnrecognizedClientException": jobs.ReasonAccessDenied,
	"RegionDisabledException":     jobs.ReasonAccessDenied,
	"ValidationError":             jobs.ReasonInvalidDestination,
	"InvalidParameterValue":       jobs.ReasonInvalidDestination,
	"MalformedPolicyDocument":     jobs.ReasonInvalidDestination,
	"PackedPolicyTooLarge":        jobs.ReasonInvalidDestination,
}

// expiredCodes are what S3 answers to temporary credentials that expired: ExpiredToken on AWS,
// InvalidAccessKeyId on SeaweedFS (whose session keys stop existing).
var expiredCodes = map[string]bool{
	"ExpiredToken":          true,
	"ExpiredTokenException": true,
	"TokenRefreshRequired":  true,
	"InvalidToken":          true,
	"InvalidAccessKeyId":    true,
}

// Classify marks err permanent when retrying cannot help: STS refused a destination's role
// (reason access_denied, naming the destination and the role), or S3 answered with a code of
// permanentCodes. Everything else (timeouts, throttling, 5xx, connection errors) stays
// retryable.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := jobs.IsPermanent(err); ok {
		return err
	}
	// Before the generic codes: an STS AccessDenied must name the role, not look like S3's.
	var are *AssumeRoleError
	if errors.As(err, &are) {
		if reason, ok := stsPermanentCodes[errorCode(are.Err)]; ok {
			return jobs.Permanent(reason, fmt.Errorf("destination %q: STS refused to let this worker assume role %s (%s): %w", are.Destination, are.RoleARN, errorCode(are.Err), err))
		}
		return err
	}
	if reason, ok := permanentCodes[errorCode(err)]; ok {
		return jobs.Permanent(reason, err)
	}
	return err
}

// classify is Classify for this sink: with a role's credentials, an expired-credentials
// answer is retryable (the next attempt gets a new session), not access denied.
func (s *S3) classify(err error) error {
	if s.credentialsExpired(err) {
		return fmt.Errorf("%w (destination %q: the temporary credentials of role %s expired)", err, s.opts.Destination, s.opts.RoleARN)
	}
	return Classify(err)
}

func (s *S3) credentialsExpired(err error) bool {
	if s.opts.Credentials == nil || s.opts.RoleARN == "" {
		return false
	}
	var are *AssumeRoleError
	if errors.As(err, &are) {
		return false
	}
	return expiredCodes[errorCode(err)]
}

func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}
