# The internal exports bucket (EXPORT_BUCKET). The worker writes under
# var.internal_prefix only. There is one lifecycle configuration per bucket (S3
# replaces the whole configuration on every put), so every rule lives in
# aws_s3_bucket_lifecycle_configuration.exports.

resource "aws_s3_bucket" "exports" {
  bucket = var.bucket_name
}

resource "aws_s3_bucket_ownership_controls" "exports" {
  bucket = aws_s3_bucket.exports.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "exports" {
  bucket = aws_s3_bucket.exports.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "exports" {
  bucket = aws_s3_bucket.exports.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "exports" {
  bucket = aws_s3_bucket.exports.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "exports" {
  bucket = aws_s3_bucket.exports.id

  # A worker that dies mid-upload leaves the parts of its multipart upload behind;
  # they are billed until aborted. A retry starts a new upload, so the old one is
  # garbage. The rule must not abort the upload of an export still running: the
  # worker ends any attempt after MAX_EXPORT_DURATION, a day less than this.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_upload_days
    }
  }

  # Retention: an export and its manifest (KEY and KEY.manifest.json, both under
  # internal_prefix) are full of e-mail addresses and phone numbers. They are kept
  # only as long as the partner syncs need them, then expire. On this versioned
  # bucket expiring makes the current version noncurrent (behind a delete marker);
  # the next rule deletes it for good. See docs/OPERATIONS.md, Retention.
  rule {
    id     = "expire-exports"
    status = "Enabled"

    filter {
      prefix = var.internal_prefix
    }

    expiration {
      days = var.exports_retention_days
    }
  }

  # Versioning keeps overwritten and expired objects as noncurrent versions; delete
  # them after noncurrent_version_retention_days, so PII does not outlive the
  # retention by more than that.
  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_retention_days
    }
  }

  # Once its noncurrent versions are gone, an expired object leaves only a delete
  # marker behind; remove those too. (S3 refuses expired_object_delete_marker in
  # the same expiration block as days, hence a rule of its own.)
  rule {
    id     = "remove-expired-delete-markers"
    status = "Enabled"

    filter {}

    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.exports]
}

# Refuse plain-HTTP access to the bucket.
data "aws_iam_policy_document" "exports_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.exports.arn,
      "${aws_s3_bucket.exports.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "exports" {
  bucket = aws_s3_bucket.exports.id
  policy = data.aws_iam_policy_document.exports_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.exports]
}
