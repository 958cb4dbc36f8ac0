#!/usr/bin/env node
// What a unit's deploy applies: the production overlay rendered by kustomize (on stdin), cut to
// the unit's own namespace (its Namespace and every object in it: Deployment, CronJob, Service,
// ConfigMap, autoscaler, ...), with the unit's image — in containers and init containers, in
// Deployments and CronJobs alike — set to the one the pipeline built. Other units' objects are
// left out, so a deploy of one unit never touches another's image.
// A namespace with no image of ours (gateway: Istio's injector sets the proxy image) takes no image.
//   kubectl kustomize deploy/k8s/overlays/production | node scripts/render-unit.mjs usage ghcr.io/acme/telco-usage:<sha>
//   kubectl kustomize deploy/k8s/overlays/production | node scripts/render-unit.mjs gateway
import { readFileSync } from "node:fs";
import { parseAllDocuments, stringify } from "yaml";

const [unit, image] = process.argv.slice(2);
if (!unit) {
  console.error("usage: kubectl kustomize <overlay> | node scripts/render-unit.mjs <unit> [<image>]");
  process.exit(2);
}
const docs = parseAllDocuments(readFileSync(0, "utf8"))
  .map((d) => d.toJS())
  .filter(Boolean);
const mine = docs.filter((o) => (o.kind === "Namespace" ? o.metadata?.name === unit : o.metadata?.namespace === unit));
if (!mine.some((o) => o.kind === "Deployment")) {
  console.error(`render-unit: the overlay has no Deployment in namespace ${unit}`);
  process.exit(1);
}
let replaced = 0;
const setImage = (podSpec) => {
  for (const c of [...(podSpec?.containers ?? []), ...(podSpec?.initContainers ?? [])]) {
    if (c.image === `telco/${unit}` || c.image?.startsWith(`telco/${unit}:`)) {
      if (!image) {
        console.error(`render-unit: ${unit} runs the image telco/${unit}: give the one to deploy`);
        process.exit(2);
      }
      c.image = image;
      replaced++;
    }
  }
};
for (const o of mine) {
  if (o.kind === "Deployment" || o.kind === "StatefulSet") setImage(o.spec?.template?.spec);
  if (o.kind === "CronJob") setImage(o.spec?.jobTemplate?.spec?.template?.spec);
}
// Namespaces first, so that one apply of an empty cluster works.
mine.sort((a, b) => (a.kind === "Namespace" ? -1 : 0) - (b.kind === "Namespace" ? -1 : 0));
process.stdout.write(mine.map((o) => stringify(o)).join("---\n"));
console.error(`render-unit: ${mine.length} objects of ${unit}, image set in ${replaced} containers`);
