output "kubeconfig" {
  description = "Admin kubeconfig of the cluster (terraform output -raw kubeconfig > ~/.kube/config)."
  value       = talos_cluster_kubeconfig.this.kubeconfig_raw
  sensitive   = true
}

output "talosconfig" {
  description = "talosctl client configuration (terraform output -raw talosconfig > ~/.talos/config)."
  value       = data.talos_client_configuration.this.talos_config
  sensitive   = true
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint of the cluster."
  value       = local.cluster_endpoint
}

output "machine_configuration" {
  description = "The control-plane machine configuration that was applied (contains secrets)."
  value       = data.talos_machine_configuration.controlplane.machine_configuration
  sensitive   = true
}
