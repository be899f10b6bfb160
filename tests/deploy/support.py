"""What the deploy tests share: rendering the chart, reading the services' Rust sources.

The contract the chart must keep is restated here on purpose (names, ports), and what the
services need (config keys, dependencies, callers) is read from their sources, so that a
change on either side that breaks the other fails a test.
"""

from __future__ import annotations

import functools
import pathlib
import re
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "cpis"
K8S = ROOT / "k8s"

# The Kubernetes version every manifest is validated against (kubernetes-validate, strict:
# unknown fields are errors). Native gRPC probes need 1.27 or later.
KUBE_VERSION = "1.31.0"

# The naming and port contract (the generated Envoy config depends on it exactly).
SERVICES: dict[str, dict[str, Any]] = {
    "identity": {"dir": "identity", "port": 50051, "admin": 9501, "values": "identity"},
    "flag-registry": {"dir": "flag-registry", "port": 50052, "admin": 9502, "values": "flagRegistry"},
    "attendance": {"dir": "attendance", "port": 50053, "admin": 9503, "values": "attendance"},
    "notification": {"dir": "notification", "port": 50054, "admin": 9504, "values": "notification"},
    "audit": {"dir": "audit", "port": 50055, "admin": 9505, "values": "audit"},
}
WORKLOADS = [*SERVICES, "edge"]
EDGE_PORT = 8443
PORT_TO_SERVICE = {spec["port"]: name for name, spec in SERVICES.items()}

# Kinds no offline Kubernetes schema knows (custom resources): validated by hand instead.
CUSTOM_KINDS = {
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "ClusterIssuer"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "Database"),
}


def production_values() -> dict[str, Any]:
    with open(CHART / "values-production.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


@functools.lru_cache(maxsize=None)
def _render_cached(values_yaml: str, namespace: str, release: str) -> tuple[tuple[str, str], ...]:
    values = yaml.safe_load(values_yaml) if values_yaml else None
    with helm.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
    return tuple(sorted(rendered.items()))


def merged_values(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values an install with `values` would use (the chart's defaults coalesced)."""
    with helm.Chart.load(str(CHART)) as chart:
        return chart.merge_values(values)


def render_files(values: dict[str, Any] | None = None, namespace: str = "cpis",
                 release: str = "cpis") -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included)."""
    key = yaml.safe_dump(values, sort_keys=True) if values else ""
    return dict(_render_cached(key, namespace, release))


def render(values: dict[str, Any] | None = None, namespace: str = "cpis",
           release: str = "cpis") -> list[dict[str, Any]]:
    """Every object the chart renders, each with its template under `__template`."""
    objects = []
    for path, text in render_files(values, namespace, release).items():
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc = dict(doc)
                doc["__template"] = path
                objects.append(doc)
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    found = {}
    for obj in objects:
        if obj["kind"] == kind:
            name = obj["metadata"]["name"]
            assert name not in found, f"two {kind} objects named {name}"
            found[name] = obj
    return found


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("__")}


def validate_kubernetes(obj: dict[str, Any]) -> None:
    """Raises kubernetes_validate's errors; custom kinds must be handled by the caller."""
    kubernetes_validate.validate(strip(obj), KUBE_VERSION, strict=True)


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    env = {}
    for var in container.get("env", []):
        assert var["name"] not in env, f"{var['name']} set twice"
        env[var["name"]] = var
    return env


CERT_MANAGER = {"certManager": {"enabled": True}}


def value_sets() -> dict[str, Any]:
    """The value sets the policy tests run against."""
    return {"defaults": None, "production": production_values(), "cert-manager": CERT_MANAGER}


def assert_restricted(test, pod) -> None:
    """Restricted Pod Security, and resources, for every container of a pod spec."""
    test.assertTrue(pod["securityContext"]["runAsNonRoot"])
    test.assertEqual(pod["securityContext"]["runAsUser"], 65532)
    test.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
    for container in pod["containers"] + pod.get("initContainers", []):
        sc = container["securityContext"]
        test.assertTrue(sc["runAsNonRoot"])
        test.assertEqual(sc["runAsUser"], 65532)
        test.assertTrue(sc["readOnlyRootFilesystem"])
        test.assertFalse(sc["allowPrivilegeEscalation"])
        test.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
        test.assertEqual(sc["seccompProfile"], {"type": "RuntimeDefault"})
        for kind in ["requests", "limits"]:
            test.assertTrue({"cpu", "memory"} <= set(container["resources"][kind]),
                            f"{container['name']} {kind}")
    test.assertFalse(any("hostPath" in v for v in pod.get("volumes", [])))


# ---- The services' Rust sources -----------------------------------------------------------

def _read(path: pathlib.Path) -> str:
    return path.read_text(encoding="utf-8")


def struct_fields(source: str, struct: str) -> set[str]:
    match = re.search(r"pub struct " + struct + r" \{(.*?)\n\}", source, re.S)
    assert match, f"struct {struct} not found"
    return set(re.findall(r"^\s*pub (\w+):", match.group(1), re.M))


@functools.lru_cache(maxsize=None)
def mesh_sections() -> dict[str, set[str]]:
    """The sections every service reads, with their keys (crates/mesh/src/config.rs)."""
    source = _read(ROOT / "crates" / "mesh" / "src" / "config.rs")
    structs = {"server": "ServerSection", "tls": "TlsSection", "telemetry": "TelemetrySection",
               "tokens": "TokenSection", "privacy": "PrivacySection"}
    return {section: struct_fields(source, struct) for section, struct in structs.items()}


@functools.lru_cache(maxsize=None)
def service_section(workload: str) -> dict[str, Any]:
    """A service's own section: its name, keys, and the services its defaults address.

    `dependencies` maps a key such as `identity_url` to the service at the port of its
    default `https://localhost:<port>`.
    """
    source = _read(ROOT / "services" / SERVICES[workload]["dir"] / "src" / "config.rs")
    name = re.search(r'const NAME: &\'static str = "(\w+)";', source).group(1)
    struct = re.search(r"impl ServiceSection for (\w+)", source).group(1)
    keys = struct_fields(source, struct)
    dependencies = {
        key: PORT_TO_SERVICE[int(port)]
        for key, port in re.findall(r'(\w+): "https://localhost:(\d+)"', source)
    }
    return {"name": name, "keys": keys, "dependencies": dependencies,
            "redis": "redis_url" in keys,
            "webhooks": any(key.startswith("webhook_") for key in keys)}


@functools.lru_cache(maxsize=None)
def policy_callers(workload: str) -> set[str]:
    """The workloads whose pods may call a service, from its access policy in src/lib.rs.

    `AnyService` admits every other mesh service, `service("x")` the service x; the edge
    when the policy names the edge or organisation systems (which, in a cluster, come
    through the edge).
    """
    source = _read(ROOT / "services" / SERVICES[workload]["dir"] / "src" / "lib.rs")
    match = re.search(r"pub fn (?:access_)?policy\(.*?\n\}\n", source, re.S)
    assert match, f"no policy function in services/{workload}/src/lib.rs"
    body = match.group(0)
    callers = set(re.findall(r'service\("([a-z-]+)"\)', body))
    if re.search(r"\bAnyService\b", body):
        callers |= set(SERVICES) - {workload}
    if re.search(r"\b(Edge|OrgSystem)\b", body):
        callers.add("edge")
    return callers
