# Security groups. Ingress comes only from var.internal_cidrs (and from the ELB to
# the instances); there is no 0.0.0.0/0 or ::/0 ingress anywhere. Egress is open:
# the worker talks to SQS, S3, STS, MongoDB, ECR and the log domain.

resource "aws_security_group" "elb" {
  name        = "${local.name}-elb"
  description = "Internal ELB of ${local.name}: HTTP 8080 from the internal network only."
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "elb_http" {
  for_each = toset(var.internal_cidrs)

  security_group_id = aws_security_group.elb.id
  description       = "HTTP 8080 (heartbeat, metrics) from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 8080
  to_port           = 8080
  cidr_ipv4         = each.value
}

# HTTPS 443 on the service's DNS name (dns.tf), only when var.dns_zone_id is set.
resource "aws_vpc_security_group_ingress_rule" "elb_https" {
  for_each = local.dns_enabled ? toset(var.internal_cidrs) : toset([])

  security_group_id = aws_security_group.elb.id
  description       = "HTTPS 443 (heartbeat, metrics under the DNS name) from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "elb_to_instances" {
  security_group_id            = aws_security_group.elb.id
  description                  = "Health checks and forwarded requests to the instances"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.instance.id
}

resource "aws_security_group" "instance" {
  name        = "${local.name}-instance"
  description = "Instances of ${local.name}: 8080 from the ELB; 8080, 9100, 4914 and SSH from the internal network."
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "instance_from_elb" {
  security_group_id            = aws_security_group.instance.id
  description                  = "Health checks from the ELB"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.elb.id
}

locals {
  # Ports the internal network may reach on an instance: the app (/heartbeat,
  # /metrics, scraped by Prometheus through the Prometheus8080 tag), node-exporter,
  # cAdvisor and SSH.
  instance_internal_ports = {
    app           = 8080
    node-exporter = 9100
    cadvisor      = 4914
    ssh           = 22
  }

  instance_internal_rules = {
    for pair in setproduct(keys(local.instance_internal_ports), var.internal_cidrs) :
    "${pair[0]} ${pair[1]}" => {
      port = local.instance_internal_ports[pair[0]]
      what = pair[0]
      cidr = pair[1]
    }
  }
}

resource "aws_vpc_security_group_ingress_rule" "instance_internal" {
  for_each = local.instance_internal_rules

  security_group_id = aws_security_group.instance.id
  description       = "${each.value.what} from ${each.value.cidr}"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr
}

resource "aws_vpc_security_group_egress_rule" "instance_all" {
  security_group_id = aws_security_group.instance.id
  description       = "Everything out: SQS, S3, STS, MongoDB, ECR, the log domain"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}
