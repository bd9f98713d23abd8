terraform {
  # OpenTofu >= 1.10 (or Terraform >= 1.10): the S3 backend's use_lockfile needs it.
  required_version = ">= 1.10.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }

  # State lives in S3, one key per environment. The bucket must have versioning
  # enabled (every state write is a new object version, so a bad apply can be rolled
  # back by restoring the previous version) and default encryption; use_lockfile keeps
  # a lock object next to the state so two applies cannot interleave.
  # Values come from env/<environment>.s3.tfbackend:
  #   tofu init -backend-config=env/prod1.s3.tfbackend
  backend "s3" {}
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge(var.extra_tags, {
      InventoryCode = "vf-export"
      ProductCode   = var.product_code
      Environment   = var.environment_tag
      ManagedBy     = "opentofu"
    })
  }
}
