#!/usr/bin/env python3
"""Fidelity check of the kube emulator with the official Kubernetes Python client.

Usage: lease_client.py KUBECONFIG

Creates, reads, replaces, watches and deletes a Lease through the `kubernetes` package
(which nobody on this project wrote), and checks that a replace with a stale
resourceVersion fails with a 409 ApiException. Exits non-zero with a message on any
mismatch; prints "python client: ok" on success.
"""

import datetime
import json
import sys

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NAMESPACE = "default"
NAME = "python-lease"


def fail(message):
    print(f"python client: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def expect(condition, message):
    if not condition:
        fail(message)


def expect_api_error(status, call, *args):
    try:
        call(*args)
    except ApiException as e:
        expect(e.status == status, f"expected HTTP {status}, got {e.status}: {e.body}")
        return json.loads(e.body)
    fail(f"expected HTTP {status}, the call succeeded")


def main(kubeconfig):
    api_client = config.new_client_from_config(config_file=kubeconfig)
    leases = client.CoordinationV1Api(api_client)
    now = datetime.datetime.now(datetime.timezone.utc)
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name=NAME),
        spec=client.V1LeaseSpec(
            holder_identity="py-a",
            lease_duration_seconds=15,
            lease_transitions=0,
            acquire_time=now,
            renew_time=now,
        ),
    )
    created = leases.create_namespaced_lease(NAMESPACE, body)
    expect(created.metadata.uid, "created lease has a uid")

    got = leases.read_namespaced_lease(NAME, NAMESPACE)
    expect(got.spec.holder_identity == "py-a", f"read back holder {got.spec.holder_identity!r}")
    expect(abs((got.spec.renew_time - now).total_seconds()) < 0.001, "renewTime keeps microseconds")
    stale_rv = got.metadata.resource_version

    got.spec.holder_identity = "py-b"
    got.spec.lease_transitions = 1
    replaced = leases.replace_namespaced_lease(NAME, NAMESPACE, got)
    expect(int(replaced.metadata.resource_version) > int(stale_rv), "replace bumps resourceVersion")

    got.metadata.resource_version = stale_rv
    got.spec.holder_identity = "py-c"
    status = expect_api_error(409, leases.replace_namespaced_lease, NAME, NAMESPACE, got)
    expect(status["reason"] == "Conflict", f"409 reason {status['reason']!r}")
    expect("the object has been modified" in status["message"], status["message"])

    listed = leases.list_namespaced_lease(NAMESPACE)
    expect([l.metadata.name for l in listed.items] == [NAME], "list shows the lease")

    # Replay from the first version: the replace shows up as MODIFIED.
    stream = watch.Watch().stream(
        leases.list_namespaced_lease, NAMESPACE, resource_version=stale_rv, timeout_seconds=5
    )
    first = next(stream)
    expect(first["type"] == "MODIFIED", f"watch event {first['type']}")
    expect(first["object"].spec.holder_identity == "py-b", "watch shows the new holder")

    leases.delete_namespaced_lease(NAME, NAMESPACE)
    expect_api_error(404, leases.read_namespaced_lease, NAME, NAMESPACE)
    print("python client: ok")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
