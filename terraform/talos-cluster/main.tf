# One Talos control-plane node (schedulable), bootstrapped into a single-node Kubernetes
# cluster: secrets -> machine configuration (with patches) -> apply -> bootstrap -> kubeconfig.

locals {
  cluster_endpoint = var.cluster_endpoint != "" ? var.cluster_endpoint : "https://${var.node_address}:6443"

  install_patch = yamlencode({
    machine = merge(
      {
        install = merge(
          { disk = var.install_disk },
          var.install_image != "" ? { image = var.install_image } : {},
        )
        network = {
          hostname    = var.hostname
          nameservers = var.nameservers
        }
        kubelet = {
          extraMounts = [{
            destination = var.local_path_dir
            type        = "bind"
            source      = var.local_path_dir
            options     = ["bind", "rshared", "rw"]
          }]
        }
        nodeLabels = var.node_labels
      },
      var.nvidia_gpu ? {
        kernel = {
          modules = [
            { name = "nvidia" },
            { name = "nvidia_uvm" },
            { name = "nvidia_drm" },
            { name = "nvidia_modeset" },
          ]
        }
        sysctls = { "net.core.bpf_jit_harden" = "1" }
      } : {},
    )
    cluster = {
      allowSchedulingOnControlPlanes = var.allow_scheduling_on_control_plane
    }
  })
}

resource "talos_machine_secrets" "this" {
  talos_version = var.talos_version
}

data "talos_machine_configuration" "controlplane" {
  cluster_name       = var.cluster_name
  cluster_endpoint   = local.cluster_endpoint
  machine_type       = "controlplane"
  machine_secrets    = talos_machine_secrets.this.machine_secrets
  talos_version      = var.talos_version
  kubernetes_version = var.kubernetes_version
  docs               = false
  examples           = false
  config_patches     = concat([local.install_patch], var.config_patches)
}

data "talos_client_configuration" "this" {
  cluster_name         = var.cluster_name
  client_configuration = talos_machine_secrets.this.client_configuration
  endpoints            = [var.node_address]
  nodes                = [var.node_address]
}

# The node boots the Talos ISO in maintenance mode; this pushes the configuration to it
# (insecure maintenance API on first apply), and Talos installs to install_disk and reboots.
resource "talos_machine_configuration_apply" "controlplane" {
  client_configuration        = talos_machine_secrets.this.client_configuration
  machine_configuration_input = data.talos_machine_configuration.controlplane.machine_configuration
  node                        = var.node_address
  endpoint                    = var.node_address
}

resource "talos_machine_bootstrap" "this" {
  client_configuration = talos_machine_secrets.this.client_configuration
  node                 = var.node_address
  endpoint             = var.node_address

  depends_on = [talos_machine_configuration_apply.controlplane]
}

resource "talos_cluster_kubeconfig" "this" {
  client_configuration = talos_machine_secrets.this.client_configuration
  node                 = var.node_address
  endpoint             = var.node_address

  depends_on = [talos_machine_bootstrap.this]
}
