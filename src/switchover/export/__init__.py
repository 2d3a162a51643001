"""Exports of a plan for teams on other tools: Argo Rollouts, Istio, nginx, Terraform, Grafana.

Each module renders plain data (pure, no sockets) and a text form (YAML or JSON) the CLI prints.
"""
