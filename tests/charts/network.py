"""Evaluating rendered NetworkPolicies for the chart tests: whether a pod may open a port on a peer.

Covers what the chart's policies use: pod and namespace selectors (matchLabels, matchExpressions), ipBlock with
except, numeric ports with endPort. Where plugins differ it errs towards allowing (an ipBlock also matches pod
addresses), so a "cannot reach" proved here holds on any plugin that enforces NetworkPolicy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "genai-pipeline"


@dataclass(frozen=True)
class Endpoint:
    """A pod (labels, namespace) or an address outside the cluster (namespace None)."""

    name: str
    ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace: str | None = NAMESPACE
    namespace_labels: Mapping[str, str] = field(default_factory=lambda: {"kubernetes.io/metadata.name": NAMESPACE})


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector's verdict; the empty selector selects everything."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        verdict = {
            "Exists": present,
            "DoesNotExist": not present,
            "In": present and labels[key] in values,
            "NotIn": not present or labels[key] not in values,
        }[operator]
        if not verdict:
            return False
    return True


def _peer_matches(peer: Mapping[str, Any], endpoint: Endpoint, namespace: str) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(endpoint.ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if endpoint.namespace is None:
        return False
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], endpoint.namespace_labels)
    else:
        in_namespace = endpoint.namespace == namespace
    return in_namespace and selects(peer.get("podSelector", {}), endpoint.labels)


def _port_matches(ports: Iterable[Mapping[str, Any]], port: int, protocol: str) -> bool:
    return any(
        entry.get("protocol", "TCP") == protocol
        and ("port" not in entry or entry["port"] <= port <= entry.get("endPort", entry["port"]))
        for entry in ports
    )


def _admits(policies: list[dict[str, Any]], pod: Endpoint, peer: Endpoint, port: int, protocol: str, way: str) -> bool:
    """Whether ``pod``'s policies let traffic go ``way`` (Ingress or Egress) between it and ``peer``."""
    if pod.namespace is None:
        return True  # outside the cluster: no policy applies
    rules_key, peers_key = ("ingress", "from") if way == "Ingress" else ("egress", "to")
    applying = [
        p
        for p in policies
        if p["metadata"].get("namespace", NAMESPACE) == pod.namespace
        and way in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], pod.labels)
    ]
    if not applying:
        return True
    return any(
        (
            peers_key not in rule
            or any(_peer_matches(peer_, peer, p["metadata"].get("namespace", NAMESPACE)) for peer_ in rule[peers_key])
        )
        and ("ports" not in rule or _port_matches(rule["ports"], port, protocol))
        for p in applying
        for rule in p["spec"].get(rules_key, [])
    )


def allowed(
    policies: list[dict[str, Any]], source: Endpoint, target: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    """A connection needs both the source's egress and the target's ingress to let it through."""
    return _admits(policies, source, target, port, protocol, "Egress") and _admits(
        policies, target, source, port, protocol, "Ingress"
    )
