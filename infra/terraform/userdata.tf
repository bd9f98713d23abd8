# Flatcar user data: an Ignition config (spec 3.3.0, which Flatcar reads natively
# since release 3185), rendered with templatefile from templates/.
#
# Why Ignition and not cloud-config or Butane:
# - Ignition runs once, in the initramfs, before systemd starts anything: the env
#   file, the fluentd config and the units exist before docker or the worker start,
#   and a config that cannot be applied fails the boot loudly instead of leaving a
#   half-configured instance in the group. Flatcar's cloud-config
#   (coreos-cloudinit) is a legacy path that runs late, on every boot, and
#   supports only a subset of its keys.
# - Butane YAML would need a transpiler at plan time (the poseidon/ct provider or
#   the butane binary); templatefile + jsonencode produce the same Ignition JSON
#   with nothing beyond OpenTofu, while each unit stays a readable file in
#   templates/.
#
# Files, unit files included, are gzip-compressed in the config (EC2 user data is
# limited to 16 KiB, and Ignition cannot read a compressed config on AWS); the units
# are written to /etc/systemd/system and enabled by name, which Ignition does through
# a systemd preset applied at first boot. fluent.conf is not here: it is baked into
# the fluentd image (infra/fluentd/Dockerfile), so the image tag pins the plugins and
# their configuration together.

locals {
  # Registry host of an image when it lives in ECR (docker login needed), else "".
  image_registries = {
    for k, img in {
      app              = var.image
      fluentd          = var.fluentd_image
      node_exporter    = var.node_exporter_image
      cadvisor         = var.cadvisor_image
      cloudwatch_agent = var.cloudwatch_agent_image
      falcon           = var.falcon_image
    } : k => can(regex("^[0-9]{12}\\.dkr\\.ecr\\.[a-z0-9-]+\\.amazonaws\\.com/", img)) ? split("/", img)[0] : ""
  }

  unit_common = {
    drain_timeout        = var.drain_timeout_seconds
    drain_stop_grace     = var.drain_stop_grace_seconds
    docker_stop_timeout  = local.docker_stop_timeout
    systemd_stop_timeout = local.systemd_stop_timeout
  }

  units = concat(
    [
      {
        name     = "vf-export-metadata.service"
        enabled  = true
        contents = templatefile("${path.module}/templates/vf-export-metadata.service.tftpl", {})
      },
      {
        name    = "fluentd.service"
        enabled = true
        contents = templatefile("${path.module}/templates/fluentd.service.tftpl", {
          registry      = local.image_registries.fluentd
          fluentd_image = var.fluentd_image
          log_endpoint  = var.log_endpoint
          aws_region    = var.aws_region
          product_name  = var.product_name
          environment   = var.environment
        })
      },
      {
        name    = "node-exporter.service"
        enabled = true
        contents = templatefile("${path.module}/templates/node-exporter.service.tftpl", {
          registry            = local.image_registries.node_exporter
          node_exporter_image = var.node_exporter_image
        })
      },
      {
        name    = "cadvisor.service"
        enabled = true
        contents = templatefile("${path.module}/templates/cadvisor.service.tftpl", {
          registry       = local.image_registries.cadvisor
          cadvisor_image = var.cadvisor_image
        })
      },
      {
        name    = "vf-export-indexes.service"
        enabled = var.run_indexes_on_boot
        contents = templatefile("${path.module}/templates/vf-export-indexes.service.tftpl", {
          registry = local.image_registries.app
          image    = var.image
        })
      },
      {
        name    = "vf-export.service"
        enabled = true
        contents = templatefile("${path.module}/templates/vf-export.service.tftpl", merge(local.unit_common, {
          registry         = local.image_registries.app
          image            = var.image
          container_memory = var.container_memory
          run_indexes      = var.run_indexes_on_boot
        }))
      },
      {
        name     = "vf-export-lifecycle.service"
        enabled  = true
        contents = templatefile("${path.module}/templates/vf-export-lifecycle.service.tftpl", local.unit_common)
      },
    ],
    var.cloudwatch_agent_enabled ? [
      {
        name    = "cloudwatch-agent.service"
        enabled = true
        contents = templatefile("${path.module}/templates/cloudwatch-agent.service.tftpl", {
          registry               = local.image_registries.cloudwatch_agent
          cloudwatch_agent_image = var.cloudwatch_agent_image
          aws_region             = var.aws_region
        })
      },
    ] : [],
    var.falcon_enabled ? [
      {
        name    = "falcon-sensor.service"
        enabled = true
        contents = templatefile("${path.module}/templates/falcon-sensor.service.tftpl", {
          registry     = local.image_registries.falcon
          falcon_image = var.falcon_image
        })
      },
    ] : [],
  )

  files = concat(
    [
      {
        path = "/etc/vf-export/vf-export.env"
        mode = parseint("600", 8)
        content = templatefile("${path.module}/templates/vf-export.env.tftpl", {
          jobs_queue_url     = aws_sqs_queue.jobs.url
          dlq_url            = aws_sqs_queue.dlq.url
          results_queue_url  = aws_sqs_queue.results.url
          control_queue_url  = aws_sqs_queue.control.url
          mongo_uri          = var.mongo_uri
          mongo_database     = var.mongo_database
          bucket             = aws_s3_bucket.exports.bucket
          key_prefix         = var.internal_prefix
          worker_concurrency = var.worker_concurrency
          drain_timeout      = var.drain_timeout_seconds
          drain_stop_grace   = var.drain_stop_grace_seconds
          max_attempts       = var.max_attempts
          max_export_hours   = (var.abort_incomplete_upload_days - 1) * 24
          log_level          = var.log_level
          debug              = var.debug
          gzip_level         = var.gzip_level
          segment_rows       = var.segment_rows
          max_segments       = var.max_segments
          aws_region         = var.aws_region
        })
      },
      {
        # Read by the container's nonroot user through a read-only bind mount.
        path    = "/etc/vf-export/destinations.json"
        mode    = parseint("644", 8)
        content = jsonencode(local.destinations)
      },
      {
        path = "/opt/bin/ecr-login"
        mode = parseint("755", 8)
        content = templatefile("${path.module}/templates/ecr-login.sh.tftpl", {
          aws_cli_image = var.aws_cli_image
          aws_region    = var.aws_region
        })
      },
      {
        path    = "/opt/bin/vf-export-metadata"
        mode    = parseint("755", 8)
        content = file("${path.module}/templates/vf-export-metadata.sh")
      },
      {
        path    = "/opt/bin/vf-export-lifecycle-watch"
        mode    = parseint("755", 8)
        content = file("${path.module}/templates/vf-export-lifecycle-watch.sh")
      },
      {
        # No automatic reboots into a new Flatcar release: a reboot would interrupt
        # exports outside any drain. New releases arrive as a new AMI through an
        # instance refresh.
        path    = "/etc/flatcar/update.conf"
        mode    = parseint("644", 8)
        content = "REBOOT_STRATEGY=off\n"
      },
    ],
    var.cloudwatch_agent_enabled ? [
      {
        path    = "/etc/vf-export/cwagent.json"
        mode    = parseint("644", 8)
        content = templatefile("${path.module}/templates/cwagent.json.tftpl", {})
      },
    ] : [],
    var.falcon_enabled ? [
      {
        path    = "/etc/vf-export/falcon.env"
        mode    = parseint("600", 8)
        content = "FALCONCTL_OPT_CID=${var.falcon_cid}\nFALCONCTL_OPT_TAGS=${join(",", concat(["ProductCode/${var.product_code}", "InventoryCode/vf-export", "Environment/${var.environment_tag}"], var.falcon_tags))}\n"
      },
    ] : [],
  )

  # Unit aliases: the operations document's runbooks say campaigns.service for the
  # worker's unit. A symlink in /etc/systemd/system to a unit file in the same
  # search path is an alias of that unit (systemd.unit(5), "Alias names may be used
  # in commands like disable, start, stop, status"), so systemctl status/restart
  # campaigns.service act on vf-export.service from the first boot. Alias= in the
  # unit's [Install] section is not used: it only takes effect when the unit is
  # enabled, which Ignition leaves to a systemd preset applied at first boot, and a
  # second writer of the same symlink would only be a way to conflict.
  # journalctl -u does not follow aliases (systemd issue #11846): use -u vf-export.
  links = [
    {
      path   = "/etc/systemd/system/campaigns.service"
      target = "/etc/systemd/system/vf-export.service"
    },
  ]

  ignition_config = templatefile("${path.module}/templates/ignition.json.tftpl", {
    files = local.files
    units = local.units
    links = local.links
  })
}
