output "jobs_queue_url" {
  description = "EXPORT_QUEUE_URL: where exports are enqueued."
  value       = aws_sqs_queue.jobs.url
}

output "dlq_url" {
  description = "EXPORT_DLQ_URL."
  value       = aws_sqs_queue.dlq.url
}

output "control_queue_url" {
  description = "EXPORT_CONTROL_QUEUE_URL: where cancel messages go (handled at once, whatever the jobs queue's backlog)."
  value       = aws_sqs_queue.control.url
}

output "results_queue_url" {
  description = "EXPORT_RESULTS_QUEUE_URL: result notices (every terminal outcome)."
  value       = aws_sqs_queue.results.url
}

output "bucket" {
  description = "EXPORT_BUCKET: the internal exports bucket."
  value       = aws_s3_bucket.exports.bucket
}

output "elb_dns_name" {
  description = "Internal address of /heartbeat and /metrics (port 8080)."
  value       = aws_elb.this.dns_name
}

output "elb_name" {
  description = "Name of the classic ELB (aws elb describe-instance-health --load-balancer-name ...)."
  value       = aws_elb.this.name
}

output "asg_name" {
  description = "Name of the autoscaling group."
  value       = aws_autoscaling_group.this.name
}

output "instance_role_arn" {
  description = "Role of the instances; the SFMC and TMOL roles must trust it."
  value       = aws_iam_role.instance.arn
}

output "operator_policy_arn" {
  description = "Managed policy for operators who run enqueue and dlq list/redrive."
  value       = aws_iam_policy.operator.arn
}

output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies."
  value       = aws_sns_topic.alarms.arn
}

output "dns_name" {
  description = "The service's DNS name (HTTPS on 443, HTTP on 8080), e.g. vf-export-prod1-us-east-1.titan.prod-tmaws.io; null without dns_zone_id."
  value       = local.dns_name
}

output "https_heartbeat_url" {
  description = "https://<dns_name>/heartbeat; null without dns_zone_id."
  value       = local.dns_enabled ? "https://${local.dns_name}/heartbeat" : null
}

output "certificate_arn" {
  description = "The validated ACM certificate of dns_name; null without dns_zone_id."
  value       = one(aws_acm_certificate_validation.service[*].certificate_arn)
}

output "route53_health_check_id" {
  description = "The Route 53 health check (CLOUDWATCH_METRIC on the ELB's HealthyHostCount); null without dns_zone_id."
  value       = one(aws_route53_health_check.service[*].id)
}
