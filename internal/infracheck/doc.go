// Package infracheck holds tests, and only tests, that read the deployment files in infra/ and
// docs/OPERATIONS.md and check them against what the operations document and the service
// promise: the ELB health check, no open ingress, the instance role's AssumeRole resources,
// the multipart lifecycle rule and the retention of exported files, the optional DNS name with
// HTTPS and its Route 53 health check, the campaigns.service alias, DEBUG in every environment,
// the index step before the apply of a deploy, the CPU scaling alarms, the ASG tags, the
// fluentd settings, and that every metric and log field the alerts, the dashboard and the
// runbooks name is one the service exports.
//
// The Terraform is parsed with github.com/hashicorp/hcl/v2 (no provider is needed), so the
// tests run offline, where `tofu init` and `tofu validate` cannot.
package infracheck
