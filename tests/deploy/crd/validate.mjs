// Validates Prometheus Operator custom resources (PodMonitor, ServiceMonitor, PrometheusRule)
// against the operator's CRD schemas, strictly: a field the schema does not define is an
// error, as `kubectl apply --validate=strict` would make it against a real API server.
//
//   node validate.mjs objects.json      # a JSON array of objects; exit 0 when all are valid
//
// The schemas come from the npm package @kubernetes-models/prometheus-operator (the CRDs'
// openAPIV3Schema compiled to validators; version pinned in package.json/package-lock.json).
// Those validators check types, required fields, enums and patterns, but ignore unknown fields
// (CRD schemas do not close their objects; the API server prunes or, in strict mode, rejects
// them). So each object is validated through a Proxy that records which properties the
// validator looked up: the validator asks for every property its schema defines, so a
// property it never asked for is unknown to the schema. Objects it enumerates (maps such as
// labels and annotations) are open by definition.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const require = createRequire(import.meta.url);
const schemas = "@kubernetes-models/prometheus-operator/package.json";
const root = require.resolve(schemas).replace(/package\.json$/, "");
const KINDS = {
  "monitoring.coreos.com/v1 PodMonitor": "ComGithubPrometheusOperatorPrometheusOperatorPkgApisMonitoringV1PodMonitor",
  "monitoring.coreos.com/v1 ServiceMonitor": "ComGithubPrometheusOperatorPrometheusOperatorPkgApisMonitoringV1ServiceMonitor",
  "monitoring.coreos.com/v1 PrometheusRule": "ComGithubPrometheusOperatorPrometheusOperatorPkgApisMonitoringV1PrometheusRule",
};

async function validator(apiVersion, kind) {
  const name = KINDS[`${apiVersion} ${kind}`];
  if (!name) return null;
  const module = await import(pathToFileURL(`${root}_schemas/${name}.js`).href);
  return module.validate;
}

// Wraps `value` so that lookups are recorded in `seen` (node -> {keys, enumerated}).
function watched(value, seen) {
  if (value === null || typeof value !== "object") return value;
  const node = { keys: new Set(), enumerated: false };
  seen.set(value, node);
  const wrapped = Array.isArray(value) ? value.map((v) => watched(v, seen)) : {};
  if (!Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) wrapped[k] = watched(v, seen);
  }
  return new Proxy(wrapped, {
    get(target, key, receiver) {
      if (typeof key === "string") node.keys.add(key);
      return Reflect.get(target, key, receiver);
    },
    has(target, key) {
      if (typeof key === "string") node.keys.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      node.enumerated = true;
      return Reflect.ownKeys(target);
    },
  });
}

// Paths of properties the validator never looked up.
function unknownFields(value, seen, path, out) {
  if (value === null || typeof value !== "object") return out;
  const node = seen.get(value);
  if (Array.isArray(value)) {
    value.forEach((v, i) => unknownFields(v, seen, `${path}/${i}`, out));
    return out;
  }
  for (const [k, v] of Object.entries(value)) {
    if (!node.enumerated && !node.keys.has(k)) out.push(`${path}/${k}`);
    unknownFields(v, seen, `${path}/${k}`, out);
  }
  return out;
}

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;
for (const obj of objects) {
  const what = `${obj.kind}/${obj.metadata?.name}`;
  const validate = await validator(obj.apiVersion, obj.kind);
  if (!validate) {
    console.log(`FAIL ${what}: no schema for ${obj.apiVersion} ${obj.kind}`);
    failed++;
    continue;
  }
  const seen = new Map();
  const ok = validate(watched(obj, seen));
  const problems = (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`);
  if (ok) {
    problems.push(...unknownFields(obj, seen, "", []).map((p) => `${p}: field not declared in the schema`));
  }
  if (problems.length) {
    failed++;
    for (const p of problems) console.log(`FAIL ${what}: ${p}`);
  } else {
    console.log(`ok ${what}`);
  }
}
process.exit(failed ? 1 : 0);
