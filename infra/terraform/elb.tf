# Internal classic ELB. The worker serves no traffic of its own: the ELB exists for
# its health check (GET /heartbeat every 30 s; 2 failures mark an instance unhealthy
# and, with health_check_type = "ELB", the ASG replaces it) and as one internal
# address for /heartbeat and /metrics: HTTP on 8080, and HTTPS on 443 under the
# service's DNS name when var.dns_zone_id is set (dns.tf).
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

  # HTTPS on the service's DNS name (dns.tf), only with var.dns_zone_id: TLS ends
  # at the ELB, which forwards to the worker's plain HTTP port.
  dynamic "listener" {
    for_each = local.dns_enabled ? [443] : []

    content {
      lb_port            = listener.value
      lb_protocol        = "https"
      instance_port      = 8080
      instance_protocol  = "http"
      ssl_certificate_id = one(aws_acm_certificate_validation.service[*].certificate_arn)
    }
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

  # The operations document's value. It only bounds how long the ELB keeps
  # connections to a deregistered instance open (there are none but the health
  # check's and /metrics'): it is not tied to the worker's drain (DRAIN_TIMEOUT +
  # DRAIN_STOP_GRACE), which the stop timeouts and the lifecycle hook wait for.
  connection_draining         = true
  connection_draining_timeout = 600
}
