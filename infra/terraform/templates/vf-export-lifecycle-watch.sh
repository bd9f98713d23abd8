#!/bin/bash
# Waits for the autoscaling group to decide to terminate this instance (target
# lifecycle state "Terminated" in the instance metadata), then stops
# vf-export.service so the worker drains while the termination lifecycle hook
# keeps the instance in Terminating:Wait.
set -uo pipefail
imds=http://169.254.169.254/latest
while true; do
  if token=$(curl -sSf -X PUT "$imds/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 60"); then
    state=$(curl -sf -H "X-aws-ec2-metadata-token: $token" "$imds/meta-data/autoscaling/target-lifecycle-state" || true)
    if [ "$state" = "Terminated" ]; then
      echo "target lifecycle state is Terminated: stopping vf-export.service (drain)"
      systemctl stop vf-export.service
      echo "vf-export.service stopped; waiting for termination"
      exec sleep infinity
    fi
  fi
  sleep 5
done
