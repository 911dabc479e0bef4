"""The Kubernetes API: one configuration rule and client (`client`), the typed operations (`ops`)."""
