locals {
  name = "${var.name_prefix}-${var.environment}"

  # The destinations file the worker reads (EXPORT_DESTINATIONS_FILE): the
  # configured cross-account destinations plus the internal bucket. Null fields are
  # dropped so the file only carries what was set.
  destinations = merge(
    {
      for name, d in var.destinations : name => {
        for k, v in d : k => v if v != null && v != ""
      }
    },
    {
      internal = {
        bucket = aws_s3_bucket.exports.bucket
        prefix = var.internal_prefix
        region = var.aws_region
      }
    },
  )

  # Every role a destination names must be one the instance role may assume.
  assumable_role_arns = [var.sfmc_role_arn, var.tmol_role_arn]
  # ("-" stands for "no role": the destination uses the instance role itself.)
  destination_roles_ok = alltrue([
    for d in values(var.destinations) : contains(concat(local.assumable_role_arns, ["-"]), coalesce(d.role_arn, "-"))
  ])

  # docker stop must outlast the worker's drain (DRAIN_TIMEOUT, then DRAIN_STOP_GRACE for jobs
  # to stop at their next stored part, then bounded shutdown steps), and systemd must outlast
  # docker stop.
  docker_stop_timeout  = var.drain_timeout_seconds + var.drain_stop_grace_seconds + 30
  systemd_stop_timeout = var.drain_timeout_seconds + var.drain_stop_grace_seconds + 60
}
