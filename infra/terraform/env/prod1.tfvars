# prod1. Apply with:
#   tofu init -backend-config=env/prod1.s3.tfbackend
#   tofu apply -var-file=env/prod1.tfvars -var "image=...:$VERSION" -var "mongo_uri=$MONGO_URI"
# Secrets (mongo_uri, falcon_cid) come from the CI's secret store as TF_VAR_* or
# -var, never from this file.

environment     = "prod1"
environment_tag = "Prod"
aws_region      = "us-east-1"

vpc_id         = "vpc-0fedcba9876543210"
subnet_ids     = ["subnet-0ccccccccccccccc1", "subnet-0ddddddddddddddd2", "subnet-0eeeeeeeeeeeeeee3"]
internal_cidrs = ["10.0.0.0/8"]
ssh_key_name   = "cet-prod-east"

instance_type = "t2.xlarge" # 4 vCPU, 16 GiB
# The operations document ran prod1 at min = max = 1 (no scaling). The scaling
# policies only act with room above min: CpuHigh adds 4 at once.
asg_min_size         = 1
asg_max_size         = 5
asg_desired_capacity = 1

image              = "444455556666.dkr.ecr.us-east-1.amazonaws.com/vf-export:1.0.0"
ecr_repository_arn = "arn:aws:ecr:us-east-1:444455556666:repository/vf-export"

sidecar_ecr_repository_arns = ["arn:aws:ecr:us-east-1:444455556666:repository/vf-fluentd", "arn:aws:ecr:us-east-1:444455556666:repository/falcon-sensor"]

container_memory   = "13g" # of 16 GiB; the Go runtime keeps its heap under 90% of it
worker_concurrency = 4
debug              = "titan*" # as the operations document runs every environment

backlog_per_instance_target = 8

bucket_name     = "vf-export-prod1-us-east-1"
internal_prefix = "exports/"

# Retention of exported files (PII): objects and manifests under internal_prefix
# expire after exports_retention_days; noncurrent versions are deleted
# noncurrent_version_retention_days later. See docs/OPERATIONS.md, Retention.
exports_retention_days            = 30
noncurrent_version_retention_days = 7

# The DNS name vf-export-prod1-us-east-1.<zone> over HTTPS with a Route 53 health
# check: set dns_zone_id to the hosted zone (and certificate_validation_zone_id to
# the public zone when that one is private). Empty: none of it is created.
dns_zone_id = ""

sfmc_role_arn = "arn:aws:iam::555566667777:role/sfmc-export"
tmol_role_arn = "arn:aws:iam::666677778888:role/tmol-export"

destinations = {
  sfmc = {
    bucket                = "sfmc-drop"
    prefix                = "verifiedfan/"
    region                = "us-east-1"
    role_arn              = "arn:aws:iam::555566667777:role/sfmc-export"
    external_id           = "vf-export-prod1"
    expected_bucket_owner = "555566667777"
    sse                   = "aws:kms"
  }
  tmol = {
    bucket                = "tmol-drop"
    prefix                = "verifiedfan/"
    region                = "us-east-1"
    role_arn              = "arn:aws:iam::666677778888:role/tmol-export"
    external_id           = "vf-export-prod1"
    expected_bucket_owner = "666677778888"
  }
}

log_endpoint  = "verifiedfan-logs.prod1.us-east-1.prod-tmaws.io"
fluentd_image = "444455556666.dkr.ecr.us-east-1.amazonaws.com/vf-fluentd:1.17-1"

oldest_message_age_threshold_seconds = 1800

alarm_subscriptions = [
  { protocol = "https", endpoint = "https://events.pagerduty.com/integration/REPLACE_ME/enqueue" },
]

falcon_enabled = true
falcon_image   = "444455556666.dkr.ecr.us-east-1.amazonaws.com/falcon-sensor:7.20.0"
# falcon_cid comes from the secret store: TF_VAR_falcon_cid
