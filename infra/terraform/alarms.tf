# CloudWatch alarms. Every alarm notifies the SNS topic; the two CPU alarms also
# drive the simple-scaling policies of the operations document.
# What each alarm means and what to do: docs/OPERATIONS.md, "CloudWatch alarms".

# Not encrypted with the AWS-managed aws/sns key: its key policy does not let
# CloudWatch publish, so alarms would fail silently. Use a customer-managed key
# that grants cloudwatch.amazonaws.com kms:Decrypt/GenerateDataKey if encryption
# at rest is required. Alarm notifications carry no secrets.
resource "aws_sns_topic" "alarms" {
  name = "${local.name}-alarms"
}

resource "aws_sns_topic_subscription" "alarms" {
  for_each = { for s in var.alarm_subscriptions : "${s.protocol}:${s.endpoint}" => s }

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = each.value.protocol
  endpoint  = each.value.endpoint
}

locals {
  asg_dimensions = { AutoScalingGroupName = aws_autoscaling_group.this.name }
  elb_dimensions = { LoadBalancerName = aws_elb.this.name }
}

# --- Scaling alarms (operations document) ------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "cpu_high" {
  alarm_name          = "${local.name}-CpuHigh"
  alarm_description   = "Average CPU of the group above 30% for 3 minutes: add 4 instances."
  namespace           = "AWS/EC2"
  metric_name         = "CPUUtilization"
  dimensions          = local.asg_dimensions
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 30
  alarm_actions       = concat(aws_autoscaling_policy.cpu_high[*].arn, [aws_sns_topic.alarms.arn])
}

resource "aws_cloudwatch_metric_alarm" "cpu_low" {
  alarm_name          = "${local.name}-CpuLow"
  alarm_description   = "Average CPU of the group below 15% for 15 minutes: remove 1 instance (never below min)."
  namespace           = "AWS/EC2"
  metric_name         = "CPUUtilization"
  dimensions          = local.asg_dimensions
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 3
  comparison_operator = "LessThanThreshold"
  threshold           = 15
  alarm_actions       = concat(aws_autoscaling_policy.cpu_low[*].arn, [aws_sns_topic.alarms.arn])
}

# --- Health of the group -----------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "unhealthy_hosts" {
  alarm_name          = "${local.name}-UnhealthyHosts"
  alarm_description   = "The ELB sees an instance failing GET /heartbeat (stalled receive loop or a drain). The ASG replaces it; look for why."
  namespace           = "AWS/ELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = local.elb_dimensions
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "elb_5xx" {
  alarm_name          = "${local.name}-Elb5XX"
  alarm_description   = "The ELB answered 5XX (no healthy instance behind it) more than 5 times in 5 minutes."
  namespace           = "AWS/ELB"
  metric_name         = "HTTPCode_ELB_5XX"
  dimensions          = local.elb_dimensions
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 5
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "in_service_below_min" {
  alarm_name          = "${local.name}-InServiceBelowMin"
  alarm_description   = "Fewer in-service instances than the group's minimum for 10 minutes: launches are failing or instances keep failing health checks."
  namespace           = "AWS/AutoScaling"
  metric_name         = "GroupInServiceInstances"
  dimensions          = local.asg_dimensions
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 10
  comparison_operator = "LessThanThreshold"
  threshold           = var.asg_min_size
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# Memory and disk come from the CloudWatch agent (cloudwatch-agent.service, namespace
# CWAgent, aggregated per group). Without the agent these alarms stay
# INSUFFICIENT_DATA; that is not an outage.
resource "aws_cloudwatch_metric_alarm" "memory_high" {
  alarm_name          = "${local.name}-MemoryHigh"
  alarm_description   = "An instance of the group uses more than 80% of its memory (CWAgent mem_used_percent, worst instance)."
  namespace           = "CWAgent"
  metric_name         = "mem_used_percent"
  dimensions          = local.asg_dimensions
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 80
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "disk_high" {
  alarm_name          = "${local.name}-DiskHigh"
  alarm_description   = "An instance of the group has its root file system more than 80% full (CWAgent disk_used_percent, worst instance)."
  namespace           = "CWAgent"
  metric_name         = "disk_used_percent"
  dimensions          = local.asg_dimensions
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 80
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# --- The queues --------------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  alarm_name          = "${local.name}-DlqNotEmpty"
  alarm_description   = "A job is in the dead-letter queue: it failed permanently, failed ${var.max_attempts} times, or was delivered ${var.max_receive_count} times. Inspect with export-service dlq list."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "oldest_job_age" {
  alarm_name          = "${local.name}-OldestJobAge"
  alarm_description   = "The oldest waiting job has waited more than ${var.oldest_message_age_threshold_seconds} s: workers are missing, stuck or too few."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.jobs.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.oldest_message_age_threshold_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}
