# Internal classic ELB. The worker serves no traffic of its own: the ELB exists for
# its health check (GET /heartbeat every 30 s; 2 failures mark an instance unhealthy
# and, with health_check_type = "ELB", the ASG replaces it) and as one internal
# address for /heartbeat and /metrics.
#
# /heartbeat answers 503 only while the worker drains or when its receive loop has
# stopped making progress. It stays 200 through a MongoDB or S3 outage: replacing
# the instance cannot fix a dependency, and a replacement storm would only add
# cold starts to the outage.

resource "aws_elb" "this" {
  name            = local.name
  internal        = true
  subnets         = var.subnet_ids
  security_groups = [aws_security_group.elb.id]

  listener {
    lb_port           = 8080
    lb_protocol       = "http"
    instance_port     = 8080
    instance_protocol = "http"
  }

  health_check {
    target              = "HTTP:8080/heartbeat"
    interval            = 30
    timeout             = 3
    healthy_threshold   = 3
    unhealthy_threshold = 2
  }

  cross_zone_load_balancing = true
  idle_timeout              = 60

  # Matches the worker's DRAIN_TIMEOUT: a deregistered instance keeps answering
  # for as long as it may still be finishing jobs.
  connection_draining         = true
  connection_draining_timeout = 600
}
