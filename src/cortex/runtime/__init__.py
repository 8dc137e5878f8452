"""Runtimes run the replicas of deployed APIs: local processes, or Kubernetes."""

from __future__ import annotations

from cortex.runtime.base import ReplicaState, ReplicaStatus, Runtime

__all__ = ["ReplicaState", "ReplicaStatus", "Runtime"]
