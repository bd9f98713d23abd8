# Queues: jobs in, dead letters, results out. All encrypted with SQS-managed keys
# (SSE-SQS), so the instance role needs no KMS permissions.

resource "aws_sqs_queue" "jobs" {
  name                    = "${local.name}-jobs"
  sqs_managed_sse_enabled = true

  # 900 s by default: the fallback lease of any consumer that does not ask for
  # its own. The worker does: it receives with VisibilityTimeout =
  # VISIBILITY_TIMEOUT (its lease, 2 min by default) and extends the lease every
  # third of it while the export runs, so a long export keeps its message hidden
  # and a worker that dies loses its message for at most one lease. A drain
  # releases messages explicitly (visibility 0) instead of waiting either out.
  # Keep this longer than VISIBILITY_TIMEOUT.
  visibility_timeout_seconds = var.jobs_visibility_timeout_seconds
  message_retention_seconds  = var.jobs_message_retention_seconds
  receive_wait_time_seconds  = 20 # long polling by default
  max_message_size           = 262144

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue" "dlq" {
  name                      = "${local.name}-dlq"
  sqs_managed_sse_enabled   = true
  message_retention_seconds = var.dlq_message_retention_seconds
  # dlq redrive and dlq list receive from here; a short visibility keeps a listed
  # message from hiding for long.
  visibility_timeout_seconds = 60
}

# Cancel messages (EXPORT_CONTROL_QUEUE_URL): every worker polls it outside its job slots, so a
# cancel takes effect at once even when every slot runs an export and the jobs queue has a
# backlog (a cancel sent to the jobs queue waits its turn there). Short messages, handled in
# milliseconds: the default visibility and retention are plenty.
resource "aws_sqs_queue" "control" {
  name                      = "${local.name}-control"
  sqs_managed_sse_enabled   = true
  message_retention_seconds = var.jobs_message_retention_seconds
  receive_wait_time_seconds = 20

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
}

# Only the jobs and control queues may use the DLQ as their dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.jobs.arn, aws_sqs_queue.control.arn]
  })
}

# Result notices (EXPORT_RESULTS_QUEUE_URL) for whoever enqueued the export: every terminal
# outcome (docs/result-notice.schema.json).
resource "aws_sqs_queue" "results" {
  name                      = "${local.name}-results"
  sqs_managed_sse_enabled   = true
  message_retention_seconds = var.jobs_message_retention_seconds
}
