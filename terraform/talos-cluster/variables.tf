variable "cluster_name" {
  description = "Name of the Talos/Kubernetes cluster (also the kubeconfig context)."
  type        = string
  default     = "homelab"
}

variable "node_address" {
  description = "IP address of the control-plane node, reachable from where Terraform runs (the Talos API on 50000, later the Kubernetes API on 6443)."
  type        = string

  validation {
    condition     = can(cidrhost("${var.node_address}/32", 0))
    error_message = "node_address must be an IPv4 address such as 10.20.0.40."
  }
}

variable "cluster_endpoint" {
  description = "Kubernetes API endpoint URL; empty means https://<node_address>:6443."
  type        = string
  default     = ""
}

variable "install_disk" {
  description = "Disk Talos installs to on the node (see `talosctl get disks --insecure -n <node>`), e.g. /dev/sda or /dev/nvme0n1."
  type        = string
  default     = "/dev/sda"
}

variable "install_image" {
  description = "Talos installer image; use an Image Factory image with the NVIDIA extensions for GPU nodes (factory.talos.dev/installer/<schematic>:<version>). Empty keeps the default installer."
  type        = string
  default     = ""
}

variable "hostname" {
  description = "Hostname of the node."
  type        = string
  default     = "talos-cp-1"
}

variable "talos_version" {
  description = "Talos version the machine configuration is generated for (e.g. v1.11.5)."
  type        = string
  default     = "v1.11.5"
}

variable "kubernetes_version" {
  description = "Kubernetes version to run (e.g. 1.34.1)."
  type        = string
  default     = "1.34.1"
}

variable "nameservers" {
  description = "DNS servers the node uses."
  type        = list(string)
  default     = ["1.1.1.1", "9.9.9.9"]
}

variable "allow_scheduling_on_control_plane" {
  description = "Run workloads on the control-plane node (needed on a single-node cluster)."
  type        = bool
  default     = true
}

variable "nvidia_gpu" {
  description = "Load the NVIDIA kernel modules (the install image must carry the nvidia-open-gpu-kernel-modules and nvidia-container-toolkit extensions)."
  type        = bool
  default     = false
}

variable "node_labels" {
  description = "Extra Kubernetes labels on the node (e.g. nvidia.com/gpu.present = \"true\" before GPU feature discovery runs)."
  type        = map(string)
  default     = {}
}

variable "local_path_dir" {
  description = "Host directory the local-path provisioner uses (bind-mounted into the kubelet)."
  type        = string
  default     = "/var/mnt/local-path-provisioner"
}

variable "config_patches" {
  description = "Extra Talos machine configuration patches (YAML strings) applied after the module's own."
  type        = list(string)
  default     = []
}
