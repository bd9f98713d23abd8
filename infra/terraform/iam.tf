# The instance role: exactly what the worker, its side-cars and the docker daemon
# need on the instance, nothing more.
#
# Deliberately absent: SendMessage to the jobs queue and Receive/Delete on the DLQ.
# `export-service enqueue` and `export-service dlq list|redrive` are operator
# commands; they run with the operator policy below, not with the instance role.

data "aws_iam_policy_document" "instance_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  name               = "${local.name}-instance"
  assume_role_policy = data.aws_iam_policy_document.instance_assume.json
}

resource "aws_iam_instance_profile" "instance" {
  name = "${local.name}-instance"
  role = aws_iam_role.instance.name
}

data "aws_iam_policy_document" "instance" {
  # Consume jobs: long-poll, delete on success, extend or release the lease.
  statement {
    sid = "ConsumeJobsQueue"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.jobs.arn, aws_sqs_queue.control.arn]
  }

  # Poison messages go to the DLQ with a reason; the depth poller reads its attributes.
  statement {
    sid       = "SendToDeadLetterQueue"
    actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.dlq.arn]
  }

  statement {
    sid       = "SendResults"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.results.arn]
  }

  # Write exports under the internal prefix only (multipart included). No read,
  # no delete, nothing outside the prefix.
  statement {
    sid = "WriteInternalExports"
    actions = [
      "s3:PutObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.exports.arn}/${var.internal_prefix}*"]
  }

  statement {
    sid       = "ListInternalMultipartUploads"
    actions   = ["s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.exports.arn]
  }

  # Cross-account destinations: only the two configured roles.
  statement {
    sid       = "AssumeDestinationRoles"
    actions   = ["sts:AssumeRole"]
    resources = [var.sfmc_role_arn, var.tmol_role_arn]
  }

  # Pull the service image. GetAuthorizationToken cannot be scoped to a repository.
  statement {
    sid       = "EcrAuth"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "EcrPull"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = concat([var.ecr_repository_arn], var.sidecar_ecr_repository_arns)
  }

  # The CloudWatch agent publishes memory and disk metrics (namespace CWAgent).
  # PutMetricData has no resource; the namespace condition is the only scope.
  statement {
    sid       = "PutAgentMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["CWAgent"]
    }
  }

  # The agent resolves ${aws:AutoScalingGroupName} from the instance's tags.
  dynamic "statement" {
    for_each = var.cloudwatch_agent_enabled ? [1] : []

    content {
      sid       = "AgentDescribeTags"
      actions   = ["ec2:DescribeTags"]
      resources = ["*"]
    }
  }

  # fluentd signs its requests to the log domain when the domain requires it.
  dynamic "statement" {
    for_each = var.log_domain_arn == null ? [] : [var.log_domain_arn]

    content {
      sid       = "ShipLogs"
      actions   = ["es:ESHttpPost", "es:ESHttpPut"]
      resources = ["${statement.value}/*"]
    }
  }
}

resource "aws_iam_role_policy" "instance" {
  name   = "${local.name}-instance"
  role   = aws_iam_role.instance.id
  policy = data.aws_iam_policy_document.instance.json
}

# For people and CI, not for the instances: attach to the operator role that runs
# `export-service enqueue`, `dlq list` and `dlq redrive` (see docs/OPERATIONS.md).
data "aws_iam_policy_document" "operator" {
  statement {
    sid       = "EnqueueJobs"
    actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.jobs.arn, aws_sqs_queue.control.arn]
  }

  statement {
    sid = "InspectAndRedriveDeadLetters"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.dlq.arn]
  }

  statement {
    sid       = "ReadResults"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.results.arn]
  }
}

resource "aws_iam_policy" "operator" {
  name        = "${local.name}-operator"
  description = "Enqueue exports and inspect/redrive the dead-letter queue of ${local.name}."
  policy      = data.aws_iam_policy_document.operator.json
}
