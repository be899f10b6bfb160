"""A gRPC client no one here wrote (Python grpcio) against a real service binary.

Checks that an ordinary client in another language can use the mesh as deployed: verify the
server's certificate by its DNS name with the CA bundle, present a SPIFFE client certificate,
read health, discover services by reflection (v1alpha, as most tools speak it), fetch their
descriptors, and see the process stop cleanly on SIGTERM.

Run by scripts/test.sh with the tools' virtual env; the binaries come from target/debug.
"""

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.path.join(TARGET, "debug")
KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


class AuditBinary(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        pki = os.path.join(cls.dir.name, "pki")
        subprocess.run(
            [os.path.join(BIN, "cpis"), "pki", "init", "--out", pki, "--org-system", "RJ1/interop"],
            check=True,
            capture_output=True,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("CPIS_")}
        env.update(
            {
                "CPIS_TLS_CA_FILE": os.path.join(pki, "audit", "ca.crt"),
                "CPIS_TLS_CERT_FILE": os.path.join(pki, "audit", "tls.crt"),
                "CPIS_TLS_KEY_FILE": os.path.join(pki, "audit", "tls.key"),
                "CPIS_SERVER_LISTEN": "127.0.0.1:0",
                "CPIS_SERVER_ADMIN_LISTEN": "127.0.0.1:0",
                "CPIS_PRIVACY_NHS_HASH_KEY": KEY,
                "CPIS_AUDIT_CHECKPOINT_KEY": KEY,
                "CPIS_AUDIT_DATABASE_URL": "sqlite:" + os.path.join(cls.dir.name, "audit.db"),
            }
        )
        cls.process = subprocess.Popen(
            [os.path.join(BIN, "cpis-audit")], env=env, stderr=subprocess.PIPE, text=True
        )
        cls.logs = []
        serving = threading.Event()

        def read():
            for line in cls.process.stderr:
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = {"unparsed": line}
                cls.logs.append(entry)
                if entry.get("message") == "serving":
                    cls.addr = entry["addr"]
                    serving.set()

        threading.Thread(target=read, daemon=True).start()
        if not serving.wait(30):
            cls.process.kill()
            raise AssertionError("the service never logged `serving`: %r" % cls.logs)
        client = os.path.join(pki, "org-RJ1-interop")

        def read_file(name):
            with open(os.path.join(client, name), "rb") as f:
                return f.read()

        credentials = grpc.ssl_channel_credentials(
            root_certificates=read_file("ca.crt"),
            private_key=read_file("tls.key"),
            certificate_chain=read_file("tls.crt"),
        )
        port = cls.addr.rsplit(":", 1)[1]
        # The server certificate names `localhost` (and the service's cluster names).
        cls.channel = grpc.secure_channel("localhost:" + port, credentials)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        if cls.process.poll() is None:
            cls.process.kill()
        cls.dir.cleanup()

    def test_1_health_is_serving(self):
        stub = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.time() + 20
        while True:
            try:
                answer = stub.Check(
                    health_pb2.HealthCheckRequest(service="cpis.audit.v1.AuditService"), timeout=5
                )
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                if time.time() > deadline:
                    raise
            if time.time() > deadline:
                self.fail("never SERVING")
            time.sleep(0.2)

    def test_2_reflection_lists_and_describes_the_service(self):
        stub = reflection_pb2_grpc.ServerReflectionStub(self.channel)
        answers = list(
            stub.ServerReflectionInfo(
                iter(
                    [
                        reflection_pb2.ServerReflectionRequest(list_services=""),
                        reflection_pb2.ServerReflectionRequest(
                            file_containing_symbol="cpis.audit.v1.AuditService"
                        ),
                    ]
                ),
                timeout=10,
            )
        )
        names = {s.name for s in answers[0].list_services_response.service}
        self.assertIn("cpis.audit.v1.AuditService", names)
        self.assertIn("grpc.health.v1.Health", names)
        self.assertNotIn("cpis.flags.v1.FlagRegistryService", names)
        files = answers[1].file_descriptor_response.file_descriptor_proto
        self.assertTrue(files, "no descriptors for the service")

    def test_3_a_refused_call_is_permission_denied(self):
        # No rule admits an organisation system to Append.
        append = self.channel.unary_unary("/cpis.audit.v1.AuditService/Append")
        with self.assertRaises(grpc.RpcError) as refused:
            append(b"", timeout=5)
        self.assertEqual(refused.exception.code(), grpc.StatusCode.PERMISSION_DENIED)

    def test_4_sigterm_stops_it_cleanly(self):
        self.process.send_signal(signal.SIGTERM)
        self.assertEqual(self.process.wait(30), 0, self.logs)


if __name__ == "__main__":
    unittest.main(verbosity=2)
