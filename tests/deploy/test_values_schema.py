"""values.schema.json: bad values are refused before anything is rendered, with a message
that names the key; and the schema covers every value."""

from __future__ import annotations

import json
import unittest

import helm_python as helm
from helm_python.errors import HelmValuesError

from support import CHART, SERVICES, production_values

# Objects whose keys are free-form by nature (labels, annotations, selectors, EnvVars).
FREE_FORM = {"stringMap", "labelSelector", "envVar", "global", "affinity", "tolerations"}


def schema():
    with open(CHART / "values.schema.json", encoding="utf-8") as f:
        return json.load(f)


class RefusedValuesTest(unittest.TestCase):
    def refusal(self, values):
        with helm.Chart.load(str(CHART)) as chart:
            with self.assertRaises(HelmValuesError) as caught:
                chart.validate_schema(values)
            # An install renders nothing with such values either.
            with self.assertRaises(HelmValuesError) as rendered:
                chart.render(values, name="cpis", namespace="cpis")
        self.assertIn("values don't meet the specifications", str(rendered.exception))
        return str(caught.exception)

    def test_the_defaults_and_production_values_are_accepted(self):
        with helm.Chart.load(str(CHART)) as chart:
            chart.validate_schema(None)
            chart.validate_schema(production_values())

    def test_a_negative_replica_count(self):
        message = self.refusal({"identity": {"replicas": -1}})
        self.assertIn("at '/identity/replicas': minimum: got -1, want 0", message)

    def test_a_replica_count_that_is_not_a_number(self):
        message = self.refusal({"audit": {"replicas": "3"}})
        self.assertIn("at '/audit/replicas': got string, want integer", message)

    def test_an_empty_required_secret_name(self):
        message = self.refusal({"secrets": {"nhsHashKey": {"name": ""}}})
        self.assertIn("at '/secrets/nhsHashKey/name': minLength: got 0, want 1", message)

    def test_a_missing_required_secret_name(self):
        # null removes a default value in Helm: the key is then missing.
        message = self.refusal({"audit": {"checkpointKeySecret": {"name": None}}})
        self.assertIn("at '/audit/checkpointKeySecret': missing property 'name'", message)
        message = self.refusal({"identity": {"keyEncryptionKeySecret": None}})
        self.assertIn("at '/identity': missing property 'keyEncryptionKeySecret'", message)

    def test_every_database_url_secret_is_required(self):
        for workload, spec in SERVICES.items():
            with self.subTest(workload=workload):
                message = self.refusal({spec["values"]: {"databaseUrlSecret": {"name": ""}}})
                self.assertIn(f"at '/{spec['values']}/databaseUrlSecret/name': minLength", message)

    def test_an_unknown_key(self):
        message = self.refusal({"replicaCount": 3})
        self.assertIn("at '': additional properties 'replicaCount' not allowed", message)
        message = self.refusal({"attendance": {"replica": 3}})
        self.assertIn("at '/attendance': additional properties 'replica' not allowed", message)

    def test_an_edge_service_type_outside_the_choice(self):
        message = self.refusal({"edge": {"service": {"type": "NodePort"}}})
        self.assertIn("at '/edge/service/type': value must be one of 'ClusterIP', 'LoadBalancer'", message)

    def test_an_unpinned_envoy(self):
        message = self.refusal({"edge": {"image": {"tag": "latest"}}})
        self.assertIn("at '/edge/image/tag'", message)

    def test_an_issuer_kind_cert_manager_does_not_have(self):
        message = self.refusal({"certManager": {"issuerRef": {"kind": "Vault"}}})
        self.assertIn("at '/certManager/issuerRef/kind'", message)


class SchemaCoverageTest(unittest.TestCase):
    def test_every_object_refuses_unknown_keys(self):
        def walk(node, path):
            if not isinstance(node, dict):
                return
            if node.get("type") == "object" and "properties" in node and path[-1] not in FREE_FORM:
                self.assertIs(node.get("additionalProperties"), False, "/".join(path))
            for key, child in node.items():
                if isinstance(child, dict):
                    walk(child, path + [key])
                elif isinstance(child, list):
                    for item in child:
                        walk(item, path + [key])
        walk(schema(), ["#"])

    def test_every_value_in_values_yaml_is_in_the_schema(self):
        root = schema()

        def resolve(node):
            while "$ref" in node:
                node = root["$defs"][node["$ref"].split("/")[-1]]
            return node

        def walk(value, node, path):
            node = resolve(node)
            self.assertTrue(node, f"{path}: no schema")
            if isinstance(value, dict) and "properties" in node:
                for key, child in value.items():
                    self.assertIn(key, node["properties"], f"{path}/{key} is not in the schema")
                    walk(child, node["properties"][key], f"{path}/{key}")
        with helm.Chart.load(str(CHART)) as chart:
            walk(chart.values, root, "")

    def test_required_secrets_say_what_they_hold(self):
        root = schema()
        refs = []

        def walk(node, path):
            if isinstance(node, dict):
                if node.get("$ref") == "#/$defs/secretRef":
                    refs.append((path, node))
                for key, child in node.items():
                    walk(child, f"{path}/{key}")
        walk(root["properties"], "")
        self.assertGreaterEqual(len(refs), 9)
        for path, node in refs:
            with self.subTest(secret=path):
                self.assertIn("Secret with", node.get("description", ""))
        secret_ref = root["$defs"]["secretRef"]
        self.assertEqual(secret_ref["required"], ["name", "key"])
        self.assertEqual(secret_ref["properties"]["name"]["minLength"], 1)


if __name__ == "__main__":
    unittest.main()
