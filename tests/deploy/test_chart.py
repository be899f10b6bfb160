"""The Helm chart, rendered offline with Helm's own SDK: lint, Kubernetes schemas, and what
every workload must have (objects, restricted Pod Security, gRPC probes, ports, labels,
configuration). Network policies, certificates, migrations and the edge:
test_chart_policies.py."""

from __future__ import annotations

import copy
import unittest

import helm_python as helm
import kubernetes_validate
import yaml

from support import (
    CERT_MANAGER, CHART, CUSTOM_KINDS, KUBE_VERSION, SERVICES, WORKLOADS, assert_restricted,
    by_kind, container_env, merged_values, mesh_sections, production_values, render,
    service_section, validate_kubernetes, value_sets,
)

VALUE_SETS = value_sets()

LABELS = ["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
          "app.kubernetes.io/part-of", "app.kubernetes.io/version"]


def app_version() -> str:
    with open(CHART / "Chart.yaml", encoding="utf-8") as f:
        return str(yaml.safe_load(f)["appVersion"])


class LintTest(unittest.TestCase):
    def test_lint_is_clean_in_strict_mode(self):
        for label, values in [("defaults", None), ("production", production_values())]:
            with self.subTest(values=label):
                report = helm.lint(str(CHART), values, strict=True, namespace="cpis",
                                   kube_version="v" + KUBE_VERSION)
                self.assertEqual(report["errors"], [], report)
                serious = [m for m in report["messages"] if m["severity"] >= 2]
                self.assertEqual(serious, [], report)


class KubernetesSchemaTest(unittest.TestCase):
    def test_every_rendered_object_is_valid_kubernetes(self):
        for label, values in VALUE_SETS.items():
            for obj in render(values):
                kind = (obj["apiVersion"], obj["kind"])
                with self.subTest(values=label, object=f"{obj['kind']}/{obj['metadata']['name']}"):
                    if kind in CUSTOM_KINDS:
                        continue  # checked in CertificateTest
                    try:
                        validate_kubernetes(obj)
                    except kubernetes_validate.ValidationError as e:
                        path = ".".join(str(p) for p in e.path)
                        self.fail(f"{obj['__template']}: {path}: {e.message}")

    def test_the_validator_refuses_an_unknown_field(self):
        # Strict mode is what makes the test above worth having.
        deployment = copy.deepcopy(by_kind(render(), "Deployment")["cpis-identity"])
        deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpcc"] = {}
        with self.assertRaises(kubernetes_validate.ValidationError):
            validate_kubernetes(deployment)

    def test_only_cert_manager_certificates_are_custom_resources(self):
        kinds = {(o["apiVersion"], o["kind"]) for o in render(CERT_MANAGER)} & CUSTOM_KINDS
        self.assertEqual(kinds, {("cert-manager.io/v1", "Certificate")})


class WorkloadTest(unittest.TestCase):
    """Every Deployment has its Service, ServiceAccount, PDB, HPA (when autoscaled) and
    NetworkPolicy, and runs under restricted Pod Security with gRPC probes."""

    def each(self):
        """(value set, values, rendered objects, workload) for every combination."""
        return [(label, values, render(values), workload)
                for label, values in VALUE_SETS.items() for workload in WORKLOADS]

    def test_the_workloads_are_exactly_the_contracts_names(self):
        for label, values in VALUE_SETS.items():
            objects = render(values)
            names = {f"cpis-{w}" for w in WORKLOADS}
            release = [o for o in objects if "helm.sh/hook" not in o["metadata"].get("annotations", {})]
            for kind in ["Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget"]:
                with self.subTest(values=label, kind=kind):
                    self.assertEqual(set(by_kind(release, kind)), names)
            self.assertEqual(set(by_kind(objects, "ServiceAccount")), set(WORKLOADS))

    def test_each_deployment_has_its_objects(self):
        for label, values, objects, workload in self.each():
            with self.subTest(values=label, workload=workload):
                name = f"cpis-{workload}"
                deployment = by_kind(objects, "Deployment")[name]
                pod = deployment["spec"]["template"]
                pod_labels = pod["metadata"]["labels"]
                selector = deployment["spec"]["selector"]["matchLabels"]
                self.assertLessEqual(selector.items(), pod_labels.items())

                service = by_kind(objects, "Service")[name]
                self.assertLessEqual(service["spec"]["selector"].items(), pod_labels.items())
                self.assertEqual(pod["spec"]["serviceAccountName"], workload)
                self.assertIn(workload, by_kind(objects, "ServiceAccount"))
                self.assertFalse(pod["spec"]["automountServiceAccountToken"])

                pdb = by_kind(objects, "PodDisruptionBudget")[name]
                self.assertLessEqual(pdb["spec"]["selector"]["matchLabels"].items(), pod_labels.items())
                policy = by_kind(objects, "NetworkPolicy")[name]
                self.assertLessEqual(policy["spec"]["podSelector"]["matchLabels"].items(),
                                     pod_labels.items())
                self.assertEqual(sorted(policy["spec"]["policyTypes"]), ["Egress", "Ingress"])

                hpas = by_kind(objects, "HorizontalPodAutoscaler")
                if label == "production":
                    hpa = hpas[name]
                    self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
                    self.assertEqual(hpa["spec"]["scaleTargetRef"],
                                     {"apiVersion": "apps/v1", "kind": "Deployment", "name": name})
                    self.assertGreaterEqual(hpa["spec"]["minReplicas"], 3)
                    self.assertNotIn("replicas", deployment["spec"], "the HPA owns replicas")
                else:
                    self.assertNotIn(name, hpas)
                    self.assertEqual(deployment["spec"]["replicas"], 1)

    def test_pods_meet_restricted_pod_security(self):
        for label, _, objects, workload in self.each():
            with self.subTest(values=label, workload=workload):
                pod = by_kind(objects, "Deployment")[f"cpis-{workload}"]["spec"]["template"]["spec"]
                assert_restricted(self, pod)


    def test_services_are_probed_with_grpc_on_the_admin_port(self):
        for label, _, objects, workload in self.each():
            with self.subTest(values=label, workload=workload):
                if workload == "edge":
                    continue  # Envoy's admin is 127.0.0.1 only: see EdgeTest
                container = by_kind(objects, "Deployment")[f"cpis-{workload}"]["spec"]["template"]["spec"]["containers"][0]
                admin = SERVICES[workload]["admin"]
                for probe in ["readinessProbe", "livenessProbe"]:
                    self.assertEqual(container[probe]["grpc"], {"port": admin, "service": ""}, probe)

    def test_ports_and_listen_addresses_follow_the_contract(self):
        for label, _, objects, workload in self.each():
            with self.subTest(values=label, workload=workload):
                if workload == "edge":
                    continue
                spec = SERVICES[workload]
                container = by_kind(objects, "Deployment")[f"cpis-{workload}"]["spec"]["template"]["spec"]["containers"][0]
                self.assertEqual(container["command"], [f"/usr/local/bin/cpis-{workload}"])
                ports = {p["name"]: p["containerPort"] for p in container["ports"]}
                self.assertEqual(ports, {"grpc": spec["port"], "admin": spec["admin"]})
                env = container_env(container)
                self.assertEqual(env["CPIS_SERVER_LISTEN"]["value"], f"0.0.0.0:{spec['port']}")
                self.assertEqual(env["CPIS_SERVER_ADMIN_LISTEN"]["value"], f"0.0.0.0:{spec['admin']}")
                service = by_kind(objects, "Service")[f"cpis-{workload}"]
                self.assertEqual({p["name"]: p["port"] for p in service["spec"]["ports"]}, ports)

    def test_every_object_carries_the_recommended_labels(self):
        for label, values in VALUE_SETS.items():
            for obj in render(values):
                with self.subTest(values=label, object=f"{obj['kind']}/{obj['metadata']['name']}"):
                    labels = obj["metadata"].get("labels", {})
                    self.assertEqual([k for k in LABELS if k not in labels], [])
                    self.assertEqual(labels["app.kubernetes.io/part-of"], "cpis")
                    self.assertEqual(labels["app.kubernetes.io/version"], app_version())
                    pod = obj.get("spec", {}).get("template", {}).get("metadata")
                    if pod:
                        self.assertEqual([k for k in LABELS if k not in pod["labels"]], [])

    def test_the_image_defaults_to_the_app_version(self):
        for name, deployment in by_kind(render(), "Deployment").items():
            image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            if name == "cpis-edge":
                self.assertRegex(image, r"^envoyproxy/envoy:v1\.40\.\d+$")
            else:
                self.assertEqual(image, f"cpis-mesh:{app_version()}")
        image = by_kind(render({"image": {"tag": "1.2.3"}}), "Deployment")["cpis-audit"]["spec"]["template"]["spec"]["containers"][0]["image"]
        self.assertEqual(image, "cpis-mesh:1.2.3")


class ProductionValuesTest(unittest.TestCase):
    def test_production_runs_three_autoscaled_replicas_with_cert_manager(self):
        values = merged_values(production_values())
        self.assertTrue(values["certManager"]["enabled"])
        self.assertEqual(values["edge"]["service"]["type"], "LoadBalancer")
        for workload in WORKLOADS:
            key = SERVICES[workload]["values"] if workload in SERVICES else "edge"
            with self.subTest(workload=workload):
                self.assertEqual(values[key]["replicas"], 3)
                self.assertTrue(values[key]["autoscaling"]["enabled"])
                self.assertGreaterEqual(values[key]["autoscaling"]["minReplicas"], 3)
        # External databases: reached by address, not by the dev stack's pod labels.
        for name in ["postgres", "redis"]:
            self.assertTrue(all("ipBlock" in peer for peer in values["networkPolicy"][name]["to"]), name)


class ConfigurationTest(unittest.TestCase):
    """The environment the chart sets is what the services read (their config.rs)."""

    def containers(self, values=None, namespace="cpis"):
        objects = render(values, namespace=namespace)
        for workload in SERVICES:
            deployment = by_kind(objects, "Deployment")[f"cpis-{workload}"]
            job = by_kind(objects, "Job")[f"cpis-{workload}-migrate"]
            for container in [deployment["spec"]["template"]["spec"]["containers"][0],
                              job["spec"]["template"]["spec"]["containers"][0]]:
                yield workload, container

    def test_every_cpis_variable_names_a_key_the_service_has(self):
        # An unknown key stops a service at start-up (exit code 2).
        for label, values in VALUE_SETS.items():
            for workload, container in self.containers(values):
                section = service_section(workload)
                sections = dict(mesh_sections())
                sections[section["name"]] = section["keys"]
                for name in container_env(container):
                    if not name.startswith("CPIS_"):
                        continue
                    with self.subTest(values=label, workload=workload, variable=name):
                        head, _, key = name[len("CPIS_"):].partition("_")
                        self.assertIn(head.lower(), sections)
                        self.assertIn(key.lower(), sections[head.lower()])

    def test_service_addresses_point_at_the_contracts_services(self):
        for workload, container in self.containers():
            section = service_section(workload)
            env = container_env(container)
            with self.subTest(workload=workload):
                self.assertTrue(section["dependencies"], "config.rs names no service")
                for key, target in section["dependencies"].items():
                    variable = f"CPIS_{section['name'].upper()}_{key.upper()}"
                    self.assertEqual(env[variable]["value"],
                                     f"https://cpis-{target}:{SERVICES[target]['port']}",
                                     variable)

    def test_secrets_come_from_secret_references(self):
        production = production_values()
        for workload, container in self.containers(production):
            section = service_section(workload)
            env = container_env(container)
            prefix = f"CPIS_{section['name'].upper()}_"
            secret_keys = {"CPIS_PRIVACY_NHS_HASH_KEY", prefix + "DATABASE_URL"}
            if section["redis"]:
                secret_keys.add(prefix + "REDIS_URL")
            if workload == "identity":
                secret_keys.add("CPIS_IDENTITY_KEY_ENCRYPTION_KEY")
            if workload == "audit":
                secret_keys.add("CPIS_AUDIT_CHECKPOINT_KEY")
            if workload == "notification":
                secret_keys.add("CPIS_NOTIFICATION_WEBHOOK_SECRET_KEY")
            with self.subTest(workload=workload):
                for name in secret_keys:
                    self.assertIn("secretKeyRef", env[name].get("valueFrom", {}), name)
                    self.assertNotIn("value", env[name], name)
                database = env[prefix + "DATABASE_URL"]["valueFrom"]["secretKeyRef"]
                self.assertEqual(database, production[SERVICES[workload]["values"]]["databaseUrlSecret"])
                if not section["redis"]:
                    self.assertNotIn(prefix + "REDIS_URL", env)

    def test_namespace_trust_domain_and_otlp_endpoint(self):
        values = {"mesh": {"trustDomain": "example.org"},
                  "telemetry": {"otlpEndpoint": "http://collector.tracing:4317"}}
        for workload, container in self.containers(values, namespace="mesh-a"):
            env = container_env(container)
            with self.subTest(workload=workload, container=container["name"]):
                self.assertEqual(env["CPIS_SERVER_NAMESPACE"]["value"], "mesh-a")
                self.assertEqual(env["CPIS_SERVER_TRUST_DOMAIN"]["value"], "example.org")
                self.assertEqual(env["OTEL_SERVICE_NAME"]["value"], workload)
                if container["name"] == "migrate":
                    self.assertNotIn("OTEL_EXPORTER_OTLP_ENDPOINT", env)
                else:
                    self.assertEqual(env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"],
                                     "http://collector.tracing:4317")

    def test_the_default_otlp_endpoint(self):
        env = container_env(next(c for _, c in self.containers() if c["name"] != "migrate"))
        self.assertEqual(env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"],
                         "http://otel-collector.observability.svc.cluster.local:4317")

    def test_the_certificate_is_mounted_where_the_services_read_it(self):
        objects = render(production_values())
        for workload in WORKLOADS:
            pod = by_kind(objects, "Deployment")[f"cpis-{workload}"]["spec"]["template"]["spec"]
            mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            with self.subTest(workload=workload):
                self.assertEqual(volumes[mounts["/etc/cpis/tls"]]["secret"]["secretName"],
                                 f"cpis-{workload}-tls")


if __name__ == "__main__":
    unittest.main()
