# The service's DNS name over HTTPS, as the operations document names it:
# vf-export-<env>-us-east-1.titan.prod-tmaws.io. Optional: every resource here has
# count = 0 unless var.dns_zone_id names a Route 53 hosted zone.
#
# - an ACM certificate for the name, validated through DNS (the validation record
#   stays, so ACM renews the certificate by itself);
# - an HTTPS listener on the ELB, 443 -> instance 8080 (elb.tf), with TLS 1.2+;
# - an alias A record of the name to the internal ELB;
# - a Route 53 health check of /heartbeat. Route 53's health checkers run on the
#   internet and cannot reach an internal ELB, so an HTTPS endpoint check of
#   https://NAME/heartbeat would always fail. The check is therefore of type
#   CLOUDWATCH_METRIC: it follows an alarm on the ELB's HealthyHostCount, which is
#   the number of instances answering the ELB's own GET /heartbeat (elb.tf).
#   See docs/OPERATIONS.md, "DNS name, HTTPS and the Route 53 health check".

locals {
  dns_enabled = var.dns_zone_id != ""

  # <name_prefix>-<environment>-<aws_region>.<zone name> unless var.dns_name is set.
  dns_name = local.dns_enabled ? (
    var.dns_name != "" ? var.dns_name : "${local.name}-${var.aws_region}.${trimsuffix(data.aws_route53_zone.service[0].name, ".")}"
  ) : null

  # ACM validates through public DNS; a private service zone needs a public one here.
  certificate_validation_zone_id = var.certificate_validation_zone_id != "" ? var.certificate_validation_zone_id : var.dns_zone_id
}

data "aws_route53_zone" "service" {
  count = local.dns_enabled ? 1 : 0

  zone_id = var.dns_zone_id
}

resource "aws_acm_certificate" "service" {
  count = local.dns_enabled ? 1 : 0

  domain_name       = local.dns_name
  validation_method = "DNS"

  lifecycle {
    create_before_destroy = true
  }
}

# One name, no SANs: exactly one validation option.
resource "aws_route53_record" "certificate_validation" {
  count = local.dns_enabled ? 1 : 0

  zone_id         = local.certificate_validation_zone_id
  name            = tolist(aws_acm_certificate.service[0].domain_validation_options)[0].resource_record_name
  type            = tolist(aws_acm_certificate.service[0].domain_validation_options)[0].resource_record_type
  records         = [tolist(aws_acm_certificate.service[0].domain_validation_options)[0].resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

# Waits until ACM has issued the certificate; the HTTPS listener uses its ARN, so
# the listener is never created with a certificate still pending validation.
resource "aws_acm_certificate_validation" "service" {
  count = local.dns_enabled ? 1 : 0

  certificate_arn         = aws_acm_certificate.service[0].arn
  validation_record_fqdns = [aws_route53_record.certificate_validation[0].fqdn]
}

# TLS 1.2 and up on the HTTPS listener.
resource "aws_load_balancer_policy" "tls" {
  count = local.dns_enabled ? 1 : 0

  load_balancer_name = aws_elb.this.name
  policy_name        = "${local.name}-tls"
  policy_type_name   = "SSLNegotiationPolicyType"

  policy_attribute {
    name  = "Reference-Security-Policy"
    value = var.elb_tls_policy
  }
}

resource "aws_load_balancer_listener_policy" "https" {
  count = local.dns_enabled ? 1 : 0

  load_balancer_name = aws_elb.this.name
  load_balancer_port = 443
  policy_names       = [aws_load_balancer_policy.tls[0].policy_name]
}

resource "aws_route53_record" "service" {
  count = local.dns_enabled ? 1 : 0

  zone_id = var.dns_zone_id
  name    = local.dns_name
  type    = "A"

  alias {
    name                   = aws_elb.this.dns_name
    zone_id                = aws_elb.this.zone_id
    evaluate_target_health = true
  }
}

# No ELB node sees an instance answering GET /heartbeat. Missing data counts as
# breaching: the ELB stops reporting when nothing is registered behind it.
resource "aws_cloudwatch_metric_alarm" "no_healthy_host" {
  count = local.dns_enabled ? 1 : 0

  alarm_name          = "${local.name}-NoHealthyHost"
  alarm_description   = "No instance behind the ELB answers GET /heartbeat for 2 minutes; drives the Route 53 health check of ${local.dns_name}."
  namespace           = "AWS/ELB"
  metric_name         = "HealthyHostCount"
  dimensions          = local.elb_dimensions
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_route53_health_check" "service" {
  count = local.dns_enabled ? 1 : 0

  type                            = "CLOUDWATCH_METRIC"
  cloudwatch_alarm_name           = aws_cloudwatch_metric_alarm.no_healthy_host[0].alarm_name
  cloudwatch_alarm_region         = var.aws_region
  insufficient_data_health_status = "LastKnownStatus"

  # Re-read the alarm when it changes.
  triggers = {
    metric_name = aws_cloudwatch_metric_alarm.no_healthy_host[0].metric_name
    threshold   = aws_cloudwatch_metric_alarm.no_healthy_host[0].threshold
  }

  tags = {
    Name = "${local.name}-heartbeat"
  }
}
