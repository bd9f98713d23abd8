# Flatcar instances in an autoscaling group behind the internal ELB.

data "aws_ami" "flatcar" {
  count = var.ami_id == null ? 1 : 0

  most_recent = true
  owners      = [var.flatcar_ami_owner]

  filter {
    name   = "name"
    values = ["Flatcar-stable-*-hvm"]
  }

  filter {
    name   = "architecture"
    values = ["x86_64"]
  }

  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

resource "aws_launch_template" "this" {
  name                   = local.name
  image_id               = var.ami_id != null ? var.ami_id : data.aws_ami.flatcar[0].id
  instance_type          = var.instance_type
  key_name               = var.ssh_key_name
  vpc_security_group_ids = [aws_security_group.instance.id]
  user_data              = base64encode(local.ignition_config)
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.instance.arn
  }

  # CpuHigh evaluates 60 s periods: basic (5 min) monitoring would never fill them.
  monitoring {
    enabled = true
  }

  # IMDSv2 only. Hop limit 2: the containers on docker's bridge network (the worker,
  # fluentd) are one hop further away and fetch the instance role's credentials too.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 2
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_size_gb
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "volume"
    tags = {
      Name = local.name
    }
  }

  lifecycle {
    precondition {
      condition     = local.destination_roles_ok
      error_message = "Every destinations[*].role_arn must be var.sfmc_role_arn or var.tmol_role_arn: the instance role may assume no other role."
    }

    precondition {
      condition     = !var.falcon_enabled || (var.falcon_image != "" && var.falcon_cid != "")
      error_message = "falcon_enabled needs falcon_image and falcon_cid."
    }

    precondition {
      condition     = length(local.ignition_config) <= 16384
      error_message = "The rendered Ignition config exceeds EC2's 16 KiB user-data limit."
    }
  }
}

resource "aws_autoscaling_group" "this" {
  name                = local.name
  vpc_zone_identifier = var.subnet_ids
  min_size            = var.asg_min_size
  max_size            = var.asg_max_size
  desired_capacity    = var.asg_desired_capacity
  load_balancers      = [aws_elb.this.name]

  # Replace instances the ELB marks unhealthy (heartbeat 503 for 2 checks), after
  # a grace period long enough for Ignition, image pulls and the index step.
  health_check_type         = "ELB"
  health_check_grace_period = 300

  # Every group metric, at one-minute granularity. GroupInServiceInstances also
  # feeds the backlog-per-instance scaling policy.
  metrics_granularity = "1Minute"
  enabled_metrics = [
    "GroupMinSize",
    "GroupMaxSize",
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupStandbyInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
    "GroupInServiceCapacity",
    "GroupPendingCapacity",
    "GroupStandbyCapacity",
    "GroupTerminatingCapacity",
    "GroupTotalCapacity",
    "WarmPoolDesiredCapacity",
    "WarmPoolWarmedCapacity",
    "WarmPoolPendingCapacity",
    "WarmPoolTerminatingCapacity",
    "WarmPoolTotalCapacity",
    "GroupAndWarmPoolDesiredCapacity",
    "GroupAndWarmPoolTotalCapacity",
  ]

  launch_template {
    id      = aws_launch_template.this.id
    version = aws_launch_template.this.latest_version
  }

  # A new launch template version rolls the group: a replacement is launched and
  # healthy before an old instance is terminated (and drained, see the lifecycle
  # hook below).
  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage = 100
      max_healthy_percentage = 200
      instance_warmup        = 300
    }
  }

  tag {
    key                 = "Name"
    value               = local.name
    propagate_at_launch = true
  }

  # Prometheus EC2 service discovery keeps instances with these tags: node-exporter
  # (9100) and cAdvisor (4914) for Prometheus=enabled, the app's /metrics for
  # Prometheus8080=enabled.
  tag {
    key                 = "Prometheus"
    value               = "enabled"
    propagate_at_launch = true
  }

  tag {
    key                 = "Prometheus8080"
    value               = "enabled"
    propagate_at_launch = true
  }

  tag {
    key                 = "InventoryCode"
    value               = "vf-export"
    propagate_at_launch = true
  }

  tag {
    key                 = "ProductCode"
    value               = var.product_code
    propagate_at_launch = true
  }

  tag {
    key                 = "Environment"
    value               = var.environment_tag
    propagate_at_launch = true
  }

  lifecycle {
    # The scaling policies own the desired capacity after creation.
    ignore_changes = [desired_capacity]
  }
}

# Scale-in and replacement wait for the drain. The instance goes to
# Terminating:Wait; vf-export-lifecycle.service on the instance sees the target
# lifecycle state "Terminated" in the instance metadata and stops vf-export, whose
# worker stops receiving, lets its jobs finish for DRAIN_TIMEOUT, then asks the rest
# to stop at their next stored part (checkpointed and released: another instance
# continues them) within DRAIN_STOP_GRACE, cancels what is left and exits. The hook
# waits drain + grace + 60 s, then times out and termination continues.
resource "aws_autoscaling_lifecycle_hook" "drain" {
  name                   = "${local.name}-drain"
  autoscaling_group_name = aws_autoscaling_group.this.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = var.drain_timeout_seconds + var.drain_stop_grace_seconds + 60
  default_result         = "CONTINUE"
}

# --- Scaling -----------------------------------------------------------------------------

# The operations document's CPU policies: CpuHigh adds 4 instances, CpuLow removes 1.
resource "aws_autoscaling_policy" "cpu_high" {
  count = var.enable_cpu_scaling ? 1 : 0

  name                   = "${local.name}-cpu-high"
  autoscaling_group_name = aws_autoscaling_group.this.name
  policy_type            = "SimpleScaling"
  adjustment_type        = "ChangeInCapacity"
  scaling_adjustment     = 4
  cooldown               = 300
}

resource "aws_autoscaling_policy" "cpu_low" {
  count = var.enable_cpu_scaling ? 1 : 0

  name                   = "${local.name}-cpu-low"
  autoscaling_group_name = aws_autoscaling_group.this.name
  policy_type            = "SimpleScaling"
  adjustment_type        = "ChangeInCapacity"
  scaling_adjustment     = -1
  cooldown               = 300
}

# Backlog per instance: visible jobs divided by in-service instances, kept near
# var.backlog_per_instance_target. This is the better signal for a queue worker:
# an export waits on MongoDB and S3 as much as on the CPU, so CPU says little
# about whether jobs are waiting, while backlog per instance says exactly that and
# scales to zero extra instances when the queue is empty. When several policies
# fire at once the ASG applies the one that gives the most capacity.
resource "aws_autoscaling_policy" "backlog" {
  count = var.enable_backlog_scaling ? 1 : 0

  name                      = "${local.name}-backlog-per-instance"
  autoscaling_group_name    = aws_autoscaling_group.this.name
  policy_type               = "TargetTrackingScaling"
  estimated_instance_warmup = 300

  target_tracking_configuration {
    target_value = var.backlog_per_instance_target

    customized_metric_specification {
      metrics {
        id          = "visible"
        label       = "Jobs waiting in the jobs queue"
        return_data = false

        metric_stat {
          stat = "Sum"

          metric {
            namespace   = "AWS/SQS"
            metric_name = "ApproximateNumberOfMessagesVisible"

            dimensions {
              name  = "QueueName"
              value = aws_sqs_queue.jobs.name
            }
          }
        }
      }

      metrics {
        id          = "in_service"
        label       = "In-service instances"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "AWS/AutoScaling"
            metric_name = "GroupInServiceInstances"

            dimensions {
              name  = "AutoScalingGroupName"
              value = aws_autoscaling_group.this.name
            }
          }
        }
      }

      metrics {
        id          = "backlog_per_instance"
        label       = "Jobs waiting per in-service instance"
        expression  = "visible / in_service"
        return_data = true
      }
    }
  }
}
