#!/bin/bash
# Writes /run/vf-export/metadata.env from the instance metadata (IMDSv2): the
# instance id and private address that fluentd adds to every log record.
set -euo pipefail
imds=http://169.254.169.254/latest
token=$(curl -sSf --retry 10 --retry-connrefused -X PUT "$imds/api/token" \
  -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
get() { curl -sSf --retry 5 -H "X-aws-ec2-metadata-token: $token" "$imds/meta-data/$1"; }
mkdir -p /run/vf-export/docker
tmp=$(mktemp /run/vf-export/metadata.env.XXXXXX)
{
  echo "INSTANCE_ID=$(get instance-id)"
  echo "IP_ADDRESS=$(get local-ipv4)"
  echo "AVAILABILITY_ZONE=$(get placement/availability-zone)"
} >"$tmp"
chmod 0644 "$tmp"
mv "$tmp" /run/vf-export/metadata.env
