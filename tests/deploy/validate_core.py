"""Validates Kubernetes objects against the Kubernetes OpenAPI schemas, offline and strictly.

    python3 validate_core.py objects.json 1.30 1.37   # a JSON array; exit 0 when all are valid

Uses the PyPI package kubernetes-validate (its schemas ship inside the package, so nothing is
fetched), in strict mode: a field the schema does not define is an error. Custom resources
(monitoring.coreos.com) are validated by crd/validate.mjs instead. Run by tests/tests/deploy.rs.
"""

import json
import sys

import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

CUSTOM_GROUPS = ("monitoring.coreos.com/",)


def main(path, versions):
    objects = json.load(open(path))
    failed = 0
    for obj in objects:
        what = "%s/%s" % (obj.get("kind"), obj.get("metadata", {}).get("name"))
        if obj.get("apiVersion", "").startswith(CUSTOM_GROUPS):
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except ValidationError as e:
                path = "/".join(str(p) for p in e.absolute_path)
                print("FAIL %s (kubernetes %s): /%s: %s" % (what, version, path, e.message))
                failed += 1
                continue
            except SchemaNotFoundError as e:
                print("FAIL %s (kubernetes %s): %s" % (what, version, e.message))
                failed += 1
                continue
            print("ok %s (kubernetes %s)" % (what, version))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
