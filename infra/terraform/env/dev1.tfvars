# dev1 (nonprod). Apply with:
#   tofu init -backend-config=env/dev1.s3.tfbackend
#   tofu apply -var-file=env/dev1.tfvars -var "image=...:$VERSION" -var "mongo_uri=$MONGO_URI"
# Secrets (mongo_uri, falcon_cid) come from the CI's secret store as TF_VAR_* or
# -var, never from this file.

environment     = "dev1"
environment_tag = "Nonprod"
aws_region      = "us-east-1"

vpc_id         = "vpc-0123456789abcdef0"
subnet_ids     = ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"]
internal_cidrs = ["10.0.0.0/8"]
ssh_key_name   = "cet-qa-east"

instance_type        = "t2.medium" # 2 vCPU, 4 GiB
asg_min_size         = 1
asg_max_size         = 1
asg_desired_capacity = 1

image              = "111111111111.dkr.ecr.us-east-1.amazonaws.com/vf-export:0.0.0-dev"
ecr_repository_arn = "arn:aws:ecr:us-east-1:111111111111:repository/vf-export"

sidecar_ecr_repository_arns = ["arn:aws:ecr:us-east-1:111111111111:repository/vf-fluentd"]

container_memory   = "3g" # of 4 GiB; the Go runtime keeps its heap under 90% of it
worker_concurrency = 2
debug              = "titan*" # as the operations document runs every environment

bucket_name     = "vf-export-dev1-us-east-1"
internal_prefix = "exports/"

# Retention of exported files (PII): objects and manifests under internal_prefix
# expire after exports_retention_days; noncurrent versions are deleted
# noncurrent_version_retention_days later. dev1 keeps them a week.
exports_retention_days            = 7
noncurrent_version_retention_days = 7

# The DNS name vf-export-dev1-us-east-1.<zone> over HTTPS with a Route 53 health
# check: set dns_zone_id to the hosted zone (and certificate_validation_zone_id to
# the public zone when that one is private). Empty: none of it is created.
dns_zone_id = ""

sfmc_role_arn = "arn:aws:iam::222233334444:role/sfmc-export-dev1"
tmol_role_arn = "arn:aws:iam::333344445555:role/tmol-export-dev1"

destinations = {
  sfmc = {
    bucket                = "sfmc-drop-dev1"
    prefix                = "verifiedfan/"
    region                = "us-east-1"
    role_arn              = "arn:aws:iam::222233334444:role/sfmc-export-dev1"
    external_id           = "vf-export-dev1"
    expected_bucket_owner = "222233334444"
  }
  tmol = {
    bucket                = "tmol-drop-dev1"
    prefix                = "verifiedfan/"
    region                = "us-east-1"
    role_arn              = "arn:aws:iam::333344445555:role/tmol-export-dev1"
    external_id           = "vf-export-dev1"
    expected_bucket_owner = "333344445555"
  }
}

log_endpoint  = "verifiedfan-logs.dev1.us-east-1.nonprod-tmaws.io"
fluentd_image = "111111111111.dkr.ecr.us-east-1.amazonaws.com/vf-fluentd:1.17-1"

oldest_message_age_threshold_seconds = 3600

alarm_subscriptions = []

falcon_enabled = false
