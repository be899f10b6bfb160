"""The plain manifests under k8s/ (dev stack and examples) and the Dockerfile."""

from __future__ import annotations

import re
import unittest

import kubernetes_validate
import yaml

from support import (
    CUSTOM_KINDS, K8S, KUBE_VERSION, ROOT, SERVICES, by_kind, merged_values, render,
    validate_kubernetes,
)


def manifests():
    """(file, object) for every object of every YAML file under k8s/."""
    found = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue  # a kustomize file, not a Kubernetes object
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    found.append((path.relative_to(K8S).as_posix(), doc))
    return found


def pods(objects):
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield obj, obj["spec"]["template"]["spec"]


class ManifestSchemaTest(unittest.TestCase):
    def test_every_manifest_is_valid_kubernetes(self):
        skipped = []
        for path, obj in manifests():
            with self.subTest(file=path, object=f"{obj['kind']}/{obj['metadata']['name']}"):
                if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
                    # CloudNativePG and cert-manager resources: no offline schema; they live
                    # in examples/ only and are checked by hand below.
                    self.assertTrue(path.startswith("examples/"), path)
                    skipped.append(obj["kind"])
                    continue
                try:
                    validate_kubernetes(obj)
                except kubernetes_validate.ValidationError as e:
                    self.fail(f"{'.'.join(str(p) for p in e.path)}: {e.message} (Kubernetes {KUBE_VERSION})")
        self.assertEqual(sorted(set(skipped)), ["Certificate", "Cluster", "ClusterIssuer", "Database", "Issuer"])

    def test_the_kustomization_lists_every_dev_manifest(self):
        with open(K8S / "kustomization.yaml", encoding="utf-8") as f:
            kustomization = yaml.safe_load(f)
        listed = set(kustomization["resources"])
        files = {p.relative_to(K8S).as_posix() for p in K8S.rglob("*.yaml")
                 if p.name != "kustomization.yaml" and not p.relative_to(K8S).as_posix().startswith("examples/")}
        self.assertEqual(listed, files)

    def test_images_are_pinned(self):
        for path, obj in manifests():
            for _, pod in pods([obj]):
                for container in pod["containers"]:
                    with self.subTest(file=path, container=container["name"]):
                        self.assertRegex(container["image"], r"^[\w./-]+:\d[\w.-]*$")


class DevStackTest(unittest.TestCase):
    def objects(self):
        return [obj for _, obj in manifests()]

    def test_the_cpis_namespace_enforces_restricted_pod_security(self):
        namespace = by_kind([o for o in self.objects() if o["kind"] == "Namespace"], "Namespace")["cpis"]
        labels = namespace["metadata"]["labels"]
        for mode in ["enforce", "audit", "warn"]:
            self.assertEqual(labels[f"pod-security.kubernetes.io/{mode}"], "restricted")

    def test_the_cpis_namespace_denies_by_default(self):
        policy = by_kind([o for o in self.objects() if o["kind"] == "NetworkPolicy"
                          and o["metadata"]["name"] == "default-deny"], "NetworkPolicy")["default-deny"]
        self.assertEqual(policy["metadata"]["namespace"], "cpis")
        self.assertEqual(policy["spec"], {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})

    def test_pods_would_pass_restricted_pod_security(self):
        for obj, pod in pods(self.objects()):
            with self.subTest(workload=obj["metadata"]["name"]):
                self.assertTrue(pod["securityContext"]["runAsNonRoot"])
                self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
                for container in pod["containers"]:
                    sc = container["securityContext"]
                    self.assertFalse(sc["allowPrivilegeEscalation"])
                    self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
                    self.assertIn("limits", container["resources"])

    def test_the_dev_secrets_are_the_ones_the_chart_names(self):
        secrets = {o["metadata"]["name"]: o for o in self.objects() if o["kind"] == "Secret"}
        values = merged_values()
        databases = re.findall(r"CREATE DATABASE (\w+);", by_kind(
            [o for o in self.objects() if o["kind"] == "ConfigMap"], "ConfigMap")["postgres-init"]["data"]["10-databases.sql"])
        self.assertEqual(len(databases), len(SERVICES))
        for workload, spec in SERVICES.items():
            ref = values[spec["values"]]["databaseUrlSecret"]
            with self.subTest(workload=workload):
                url = secrets[ref["name"]]["stringData"][ref["key"]]
                self.assertRegex(url, r"^postgres://\w+:[\w-]+@postgres:5432/\w+$")
                self.assertIn(url.rsplit("/", 1)[1], databases)
        redis = values["secrets"]["redisUrl"]
        self.assertEqual(secrets[redis["name"]]["stringData"][redis["key"]], "redis://redis:6379")

    def test_the_chart_may_reach_the_dev_databases(self):
        # The chart's default egress peers select the dev Postgres and Redis pods.
        objects = self.objects()
        np = merged_values()["networkPolicy"]
        for name, kind in [("postgres", "StatefulSet"), ("redis", "Deployment")]:
            pod_labels = by_kind([o for o in objects if o["kind"] == kind], kind)[name]["spec"]["template"]["metadata"]["labels"]
            selector = np[name]["to"][0]["podSelector"]["matchLabels"]
            self.assertLessEqual(selector.items(), pod_labels.items(), name)
        # And the dev databases admit the chart's pods (the namespace denies by default).
        chart_pods = [d["spec"]["template"]["metadata"]["labels"] for d in by_kind(render(), "Deployment").values()]
        postgres = by_kind([o for o in objects if o["kind"] == "NetworkPolicy"], "NetworkPolicy")["postgres"]
        expressions = postgres["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"]
        admitted = [labels for labels in chart_pods
                    if all(labels.get(e["key"]) in e["values"] for e in expressions)]
        self.assertEqual(len(admitted), len(SERVICES))

    def test_the_collector_exports_to_jaeger(self):
        objects = self.objects()
        config = yaml.safe_load(by_kind([o for o in objects if o["kind"] == "ConfigMap"],
                                        "ConfigMap")["otel-collector"]["data"]["config.yaml"])
        self.assertEqual(config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"], "0.0.0.0:4317")
        self.assertEqual(config["receivers"]["otlp"]["protocols"]["http"]["endpoint"], "0.0.0.0:4318")
        exporter = config["exporters"]["otlp/jaeger"]["endpoint"]
        self.assertEqual(exporter, "jaeger.observability.svc.cluster.local:4317")
        self.assertEqual(config["service"]["pipelines"]["traces"]["exporters"], ["otlp/jaeger"])
        services = by_kind([o for o in objects if o["kind"] == "Service"], "Service")
        ports = {p["port"] for p in services["jaeger"]["spec"]["ports"]}
        self.assertTrue({16686, 4317} <= ports)
        self.assertEqual({p["port"] for p in services["otel-collector"]["spec"]["ports"]}, {4317, 4318})
        # The chart's default endpoint is this collector.
        self.assertEqual(merged_values()["telemetry"]["otlpEndpoint"],
                         "http://otel-collector.observability.svc.cluster.local:4317")


class ExamplesTest(unittest.TestCase):
    """The custom resources no offline schema knows, checked by hand."""

    def objects(self, name):
        with open(K8S / "examples" / name, encoding="utf-8") as f:
            return [d for d in yaml.safe_load_all(f) if d]

    def test_the_ca_issuer_is_the_one_the_chart_names(self):
        objects = self.objects("cert-manager-issuer.yaml")
        issuers = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterIssuer"}
        ref = merged_values({"certManager": {"enabled": True}})["certManager"]["issuerRef"]
        self.assertEqual(ref["kind"], "ClusterIssuer")
        self.assertEqual(issuers[ref["name"]]["spec"]["ca"]["secretName"], "cpis-ca")
        ca = next(o for o in objects if o["kind"] == "Certificate")
        self.assertTrue(ca["spec"]["isCA"])
        self.assertEqual(ca["spec"]["secretName"], "cpis-ca")

    def test_the_cnpg_cluster_holds_one_database_per_service(self):
        objects = self.objects("cnpg-cluster.yaml")
        cluster = next(o for o in objects if o["kind"] == "Cluster")
        self.assertGreaterEqual(cluster["spec"]["instances"], 3)
        names = {cluster["spec"]["bootstrap"]["initdb"]["database"]}
        names |= {o["spec"]["name"] for o in objects if o["kind"] == "Database"}
        self.assertEqual(len(names), len(SERVICES))


class DockerfileTest(unittest.TestCase):
    def test_the_image_builds_every_binary_and_runs_as_nonroot(self):
        text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
        stages = re.findall(r"^FROM (\S+)", text, re.M)
        self.assertRegex(stages[0], r"^rust:\d+\.\d+")
        self.assertEqual(stages[-1], "gcr.io/distroless/cc-debian12:nonroot")
        self.assertIn("cargo build --release --locked", text)
        self.assertRegex(text, r"(?m)^USER 65532")
        for workload in SERVICES:
            # The chart runs /usr/local/bin/cpis-<workload>.
            self.assertIn(f"-p cpis-{workload}", text)
            self.assertIn(f"target/release/cpis-{workload}", text)
        self.assertIn("-p cpis-cli", text)
        self.assertIn("COPY --from=build /out/ /usr/local/bin/", text)
        ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
        for path in ["target/", ".git/", ".tools/"]:
            self.assertIn(path, ignored)


if __name__ == "__main__":
    unittest.main()
