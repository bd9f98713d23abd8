# Inputs, one set per environment: env/dev1.tfvars and env/prod1.tfvars are the examples.

# --- Identity of the deployment ----------------------------------------------------------

variable "environment" {
  description = "Environment name used in resource names and log records (dev1, prod1)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]+$", var.environment))
    error_message = "environment must be lower-case letters and digits, e.g. dev1 or prod1."
  }
}

variable "environment_tag" {
  description = "Value of the Environment tag (Nonprod or Prod), as the inventory and the falcon sensor expect it."
  type        = string

  validation {
    condition     = contains(["Nonprod", "Prod"], var.environment_tag)
    error_message = "environment_tag must be Nonprod or Prod."
  }
}

variable "aws_region" {
  description = "AWS region of every resource here."
  type        = string
  default     = "us-east-1"
}

variable "name_prefix" {
  description = "Prefix of every resource name; the full name is <name_prefix>-<environment>."
  type        = string
  default     = "vf-export"
}

variable "product_code" {
  description = "Value of the ProductCode tag."
  type        = string
  default     = "PRD1541"
}

variable "product_name" {
  description = "product_name field added to every log record by fluentd (Kibana: product_name:\"titan\")."
  type        = string
  default     = "titan"
}

variable "extra_tags" {
  description = "More tags for every resource (merged into the provider's default_tags)."
  type        = map(string)
  default     = {}
}

# --- Network -----------------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC of the instances and the internal ELB."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (one per availability zone) for the ASG and the internal ELB."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids must name at least one subnet."
  }
}

variable "internal_cidrs" {
  description = "The internal IPv4 networks (VPN, VPC, monitoring) allowed to reach the ELB, the metrics ports and SSH. Nothing else is admitted."
  type        = list(string)

  validation {
    condition     = length(var.internal_cidrs) > 0 && alltrue([for c in var.internal_cidrs : can(cidrhost(c, 0)) && can(regex("^[0-9.]+/[0-9]+$", c))])
    error_message = "internal_cidrs must be a non-empty list of IPv4 CIDR blocks."
  }

  validation {
    condition     = !anytrue([for c in var.internal_cidrs : contains(["0.0.0.0/0", "::/0"], c)])
    error_message = "internal_cidrs must not contain 0.0.0.0/0 or ::/0: the service is internal only."
  }
}

variable "ssh_key_name" {
  description = "EC2 key pair for SSH as user core (cet-qa-east for nonprod, cet-prod-east for prod); null for none."
  type        = string
  default     = null
}

# --- Instances and scaling ---------------------------------------------------------------

variable "instance_type" {
  description = "EC2 instance type (dev1 t2.medium, prod1 t2.xlarge)."
  type        = string
}

variable "ami_id" {
  description = "Flatcar Container Linux AMI; null picks the newest Flatcar stable HVM image of var.flatcar_ami_owner."
  type        = string
  default     = null
}

variable "flatcar_ami_owner" {
  description = "AWS account that publishes the Flatcar AMIs (Kinvolk/Flatcar)."
  type        = string
  default     = "075585003325"
}

variable "root_volume_size_gb" {
  description = "Size of the root volume (gp3). Docker images and the fluentd buffer live here."
  type        = number
  default     = 30
}

variable "asg_min_size" {
  description = "Fewest instances in the group."
  type        = number
}

variable "asg_max_size" {
  description = "Most instances in the group. CpuHigh adds 4 at a time, so keep room above min."
  type        = number
}

variable "asg_desired_capacity" {
  description = "Instances at creation. Later changes come from the scaling policies (ignored by plan)."
  type        = number
}

variable "enable_cpu_scaling" {
  description = "Keep the CpuHigh/CpuLow simple-scaling policies of the operations document."
  type        = bool
  default     = true
}

variable "enable_backlog_scaling" {
  description = "Add the target-tracking policy on queue backlog per in-service instance (the better signal for a queue worker)."
  type        = bool
  default     = true
}

variable "backlog_per_instance_target" {
  description = "Visible jobs per in-service instance the target-tracking policy aims for. About WORKER_CONCURRENCY times the jobs one instance finishes within the acceptable wait."
  type        = number
  default     = 8
}

variable "drain_timeout_seconds" {
  description = "DRAIN_TIMEOUT of the worker: after SIGTERM, how long jobs in flight may finish before they are asked to stop at their next stored part (checkpointed and released; another worker continues them from there)."
  type        = number
  default     = 120

  validation {
    condition     = var.drain_timeout_seconds >= 30 && var.drain_timeout_seconds <= 3600
    error_message = "drain_timeout_seconds must be between 30 and 3600 (the termination lifecycle hook waits drain + drain_stop_grace_seconds + 60 s, at most 7200)."
  }
}

variable "drain_stop_grace_seconds" {
  description = "DRAIN_STOP_GRACE of the worker: once the drain timeout has passed, how long jobs asked to stop may take to reach their next stored part before they are canceled (their unstored rows are then read again by the next attempt)."
  type        = number
  default     = 60

  validation {
    condition     = var.drain_stop_grace_seconds >= 10 && var.drain_stop_grace_seconds <= 600
    error_message = "drain_stop_grace_seconds must be between 10 and 600 (enough to store one part; the termination lifecycle hook waits drain + grace + 60 s, at most 7200)."
  }
}

# --- The application container -----------------------------------------------------------

variable "image" {
  description = "Full image reference of export-service, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/vf-export:1.4.2. Pin a tag or digest, never latest."
  type        = string
}

variable "ecr_repository_arn" {
  description = "ARN of the ECR repository holding var.image; the instance role may pull only from it."
  type        = string
}

variable "sidecar_ecr_repository_arns" {
  description = "ECR repositories of mirrored side-car images (fluentd, falcon, ...) the instances may also pull from."
  type        = list(string)
  default     = []
}

variable "container_memory" {
  description = "docker run --memory of the vf-export container (e.g. 3g). The binary sets its Go memory limit (GOMEMLIMIT) to 90% of it when GOMEMLIMIT is not set."
  type        = string
}

variable "worker_concurrency" {
  description = "WORKER_CONCURRENCY: exports one instance runs at once."
  type        = number
  default     = 4
}

variable "log_level" {
  description = "LOG_LEVEL of the worker (debug, info, warn, error)."
  type        = string
  default     = "info"
}

variable "debug" {
  description = "DEBUG namespaces that log at debug level regardless of LOG_LEVEL (e.g. titan*, titan:worker, -titan:sink). Empty for none. The default is the operations document's DEBUG='titan*', which it sets in every environment."
  type        = string
  default     = "titan*"
}

variable "gzip_level" {
  description = "GZIP_LEVEL of the exported objects (1 fastest .. 9 smallest)."
  type        = number
  default     = 6
}

variable "segment_rows" {
  description = "SEGMENT_ROWS: an export of at least twice this many rows is split into segments of about this many rows over the fleet, written into one object (0: never split). See docs/OPERATIONS.md, Large exports."
  type        = number
  default     = 1000000

  validation {
    condition     = var.segment_rows >= 0
    error_message = "segment_rows must be 0 (never split) or more."
  }
}

variable "max_segments" {
  description = "MAX_SEGMENTS: most segments of one export (2..100). Segments run on any instance; more than the group's max_size x worker_concurrency only queue."
  type        = number
  default     = 8

  validation {
    condition     = var.max_segments >= 2 && var.max_segments <= 100
    error_message = "max_segments must be between 2 and 100."
  }
}

variable "mongo_uri" {
  description = "MONGO_URI of the source database. Written to the instance's env file (mode 0600); see docs/OPERATIONS.md on who can read user data."
  type        = string
  sensitive   = true
}

variable "mongo_database" {
  description = "MONGO_DATABASE."
  type        = string
  default     = "titan"
}

variable "run_indexes_on_boot" {
  description = "Run the oneshot vf-export-indexes.service (export-service indexes) before the worker starts on every boot. Index creation is idempotent; the pre-deploy CI step runs it too."
  type        = bool
  default     = true
}

# --- Queues ------------------------------------------------------------------------------

variable "jobs_visibility_timeout_seconds" {
  description = "Visibility timeout of the jobs queue. The worker extends the lease of a running job before it runs out, so this is how long a message stays hidden after a worker dies without releasing it."
  type        = number
  default     = 900
}

variable "jobs_message_retention_seconds" {
  description = "How long an unprocessed job waits in the jobs queue before SQS drops it."
  type        = number
  default     = 345600 # 4 days
}

variable "dlq_message_retention_seconds" {
  description = "How long a dead job stays in the DLQ; longer than the jobs queue so it can be inspected and redriven."
  type        = number
  default     = 1209600 # 14 days, the SQS maximum
}

variable "max_attempts" {
  description = "The worker's MAX_ATTEMPTS: failed attempts of an export (counted in the export ledger; releases at shutdown do not count) before the worker dead-letters it as max_attempts."
  type        = number
  default     = 5
}

variable "max_receive_count" {
  description = "Deliveries of one message before SQS moves it to the DLQ: the backstop for failures the ledger cannot see (MongoDB unreachable at the claim). Keep it above max_attempts, or killed attempts and failures before the claim use up receives first and SQS dead-letters exports the ledger still counts as running."
  type        = number
  default     = 10
}

variable "abort_incomplete_upload_days" {
  description = "Days after which the exports bucket aborts an unfinished multipart upload. The worker's MAX_EXPORT_DURATION is one day less, so a running export's upload is never aborted under it."
  type        = number
  default     = 7
  validation {
    condition     = var.abort_incomplete_upload_days >= 2
    error_message = "abort_incomplete_upload_days must be at least 2 (MAX_EXPORT_DURATION is one day less)."
  }
}

variable "oldest_message_age_threshold_seconds" {
  description = "Alarm when the oldest job has waited longer than this (ApproximateAgeOfOldestMessage)."
  type        = number
  default     = 1800
}

# --- Storage and destinations ------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the internal exports bucket (EXPORT_BUCKET)."
  type        = string
}

variable "exports_retention_days" {
  description = "Days after which the internal bucket expires an exported object and its manifest (everything under internal_prefix). The files carry e-mail addresses and phone numbers: keep them only as long as the partner syncs need them. See docs/OPERATIONS.md, Retention."
  type        = number
  default     = 30

  validation {
    condition     = var.exports_retention_days >= 1 && floor(var.exports_retention_days) == var.exports_retention_days
    error_message = "exports_retention_days must be a whole number of days, at least 1."
  }
}

variable "noncurrent_version_retention_days" {
  description = "Days a noncurrent version (an overwritten object, or one expired by exports_retention_days) stays in the versioned internal bucket before S3 deletes it for good. An export's data is gone at most exports_retention_days + this many days after it was written."
  type        = number
  default     = 7

  validation {
    condition     = var.noncurrent_version_retention_days >= 1 && floor(var.noncurrent_version_retention_days) == var.noncurrent_version_retention_days
    error_message = "noncurrent_version_retention_days must be a whole number of days, at least 1."
  }
}

variable "internal_prefix" {
  description = "Key prefix the worker may write under in the internal bucket (with a trailing slash)."
  type        = string
  default     = "exports/"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*/$", var.internal_prefix))
    error_message = "internal_prefix must be a non-empty key prefix ending with /, such as exports/."
  }
}

variable "sfmc_role_arn" {
  description = "Role in the SFMC account the worker assumes to write SFMC drops."
  type        = string

  validation {
    condition     = can(regex("^arn:aws:iam::[0-9]{12}:role/.+$", var.sfmc_role_arn))
    error_message = "sfmc_role_arn must be an IAM role ARN."
  }
}

variable "tmol_role_arn" {
  description = "Role in the TMOL account the worker assumes to write TMOL drops."
  type        = string

  validation {
    condition     = can(regex("^arn:aws:iam::[0-9]{12}:role/.+$", var.tmol_role_arn))
    error_message = "tmol_role_arn must be an IAM role ARN."
  }
}

variable "destinations" {
  description = "Cross-account destinations written to EXPORT_DESTINATIONS_FILE (the internal bucket is added as \"internal\"). role_arn must be var.sfmc_role_arn or var.tmol_role_arn: the instance role may assume nothing else."
  type = map(object({
    bucket                = string
    prefix                = optional(string, "")
    region                = optional(string)
    role_arn              = optional(string)
    external_id           = optional(string)
    session_name          = optional(string)
    expected_bucket_owner = optional(string)
    sse                   = optional(string)
    kms_key_id            = optional(string)
    storage_class         = optional(string)
    session_duration      = optional(string)
    refresh_before        = optional(string)
    key_template          = optional(string)
    checksum              = optional(string)
  }))
  default = {}
}

# --- Logs, metrics, alarms ---------------------------------------------------------------

variable "log_endpoint" {
  description = "Host name of the Elasticsearch domain fluentd ships to (e.g. verifiedfan-logs.prod1.us-east-1.prod-tmaws.io)."
  type        = string
}

variable "log_domain_arn" {
  description = "ARN of that Elasticsearch/OpenSearch domain when its access policy relies on signed requests: the role then may es:ESHttpPost/Put on it. Null when the domain admits the VPC without signatures."
  type        = string
  default     = null
}

variable "alarm_subscriptions" {
  description = "Subscriptions of the alarm SNS topic (e.g. PagerDuty https endpoint, e-mail)."
  type = list(object({
    protocol = string
    endpoint = string
  }))
  default = []
}

variable "cloudwatch_agent_enabled" {
  description = "Run the CloudWatch agent container that publishes mem_used_percent and disk_used_percent (namespace CWAgent) for the memory and disk alarms."
  type        = bool
  default     = true
}

# --- Side-car images (mirror them into ECR when the subnets have no route out) -----------

variable "fluentd_image" {
  description = "fluentd image with fluent-plugin-concat and fluent-plugin-aws-elasticsearch-service (infra/fluentd/Dockerfile builds one)."
  type        = string
}

variable "node_exporter_image" {
  description = "Prometheus node-exporter image."
  type        = string
  default     = "quay.io/prometheus/node-exporter:v1.9.1"
}

variable "cadvisor_image" {
  description = "cAdvisor image."
  type        = string
  default     = "gcr.io/cadvisor/cadvisor:v0.52.1"
}

variable "cloudwatch_agent_image" {
  description = "CloudWatch agent image."
  type        = string
  default     = "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:1.300057.1b1167"
}

variable "aws_cli_image" {
  description = "AWS CLI image used once per start to log docker in to ECR (Flatcar has no aws CLI)."
  type        = string
  default     = "public.ecr.aws/aws-cli/aws-cli:2.27.50"
}

variable "falcon_enabled" {
  description = "Install the CrowdStrike falcon sensor unit (container named falcon)."
  type        = bool
  default     = false
}

variable "falcon_image" {
  description = "Falcon container sensor image (from the CrowdStrike registry, mirrored into ECR)."
  type        = string
  default     = ""
}

variable "falcon_cid" {
  description = "CrowdStrike customer ID (CID) with checksum."
  type        = string
  default     = ""
  sensitive   = true
}

variable "falcon_tags" {
  description = "Sensor grouping tags."
  type        = list(string)
  default     = ["PosturePref/Measured", "UpdatePref/Early"]
}

# --- DNS name, HTTPS and the Route 53 health check (optional) ----------------------------

variable "dns_zone_id" {
  description = "Route 53 hosted zone (public or private) of the service's name, e.g. the zone of titan.prod-tmaws.io. Empty (the default): no DNS name, no certificate, no HTTPS listener, no Route 53 health check."
  type        = string
  default     = ""

  validation {
    condition     = var.dns_zone_id == "" || can(regex("^Z[A-Z0-9]+$", var.dns_zone_id))
    error_message = "dns_zone_id must be empty or a Route 53 hosted zone id (Z...)."
  }
}

variable "dns_name" {
  description = "Fully qualified name of the service. Empty: <name_prefix>-<environment>-<aws_region>.<name of dns_zone_id>, e.g. vf-export-prod1-us-east-1.titan.prod-tmaws.io. Only used with dns_zone_id."
  type        = string
  default     = ""
}

variable "certificate_validation_zone_id" {
  description = "Public Route 53 hosted zone that holds the ACM DNS validation record of the name. ACM validates through public DNS, so when dns_zone_id is a private zone set this to the public zone of the same domain. Empty: dns_zone_id."
  type        = string
  default     = ""

  validation {
    condition     = var.certificate_validation_zone_id == "" || can(regex("^Z[A-Z0-9]+$", var.certificate_validation_zone_id))
    error_message = "certificate_validation_zone_id must be empty or a Route 53 hosted zone id (Z...)."
  }
}

variable "elb_tls_policy" {
  description = "Predefined security policy of the ELB's HTTPS listener (Reference-Security-Policy of its SSL negotiation policy)."
  type        = string
  default     = "ELBSecurityPolicy-TLS-1-2-2017-01"
}
