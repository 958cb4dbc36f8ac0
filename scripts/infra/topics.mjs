// Topic provisioning shared by `npm run infra:up` and the test runner, so both
// agree on exactly which topics exist and how many partitions they have.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

export const TOPICS_FILE = fileURLToPath(new URL("../../services/kit/src/topics.json", import.meta.url));

/** `usage.events` -> `KAFKA_PARTITIONS_USAGE_EVENTS` */
export function partitionsEnvName(topic) {
  return `KAFKA_PARTITIONS_${topic.toUpperCase().replace(/[^A-Z0-9]/g, "_")}`;
}

function partitionsFor(topic, fallback, env) {
  const name = partitionsEnvName(topic);
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}=${raw} is not a positive integer`);
  return n;
}

/**
 * The full desired topic set: every topic in topics.json plus its `.dlq`.
 * A DLQ gets the same partition count as its source (and the same env override)
 * so a record keeps its key->partition mapping when dead-lettered, and replaying
 * a DLQ preserves per-key order.
 */
export async function desiredTopics({ env = process.env, file = TOPICS_FILE } = {}) {
  const defs = JSON.parse(await readFile(file, "utf8"));
  const out = [];
  for (const [topic, def] of Object.entries(defs)) {
    const partitions = partitionsFor(topic, def.partitions ?? 1, env);
    out.push({ topic, partitions }, { topic: `${topic}.dlq`, partitions });
  }
  return out;
}

/** kafkajs is CommonJS; depending on how Node's lexer saw it the API is on the namespace or on `default`. */
export async function loadKafkajs() {
  let mod;
  try {
    mod = await import("kafkajs");
  } catch (err) {
    throw new Error(`kafkajs is not installed (run \`npm ci\` first): ${err.message}`);
  }
  return mod.Kafka ? mod : mod.default;
}

/**
 * Creates missing topics and grows under-partitioned ones (Kafka cannot shrink).
 * Returns what it did so callers can report it.
 */
export async function ensureTopics({ brokers, log = () => {}, env = process.env, topics } = {}) {
  const { Kafka, logLevel } = await loadKafkajs();
  const wanted = topics ?? (await desiredTopics({ env }));
  const brokerList = Array.isArray(brokers) ? brokers : String(brokers).split(",");
  const kafka = new Kafka({
    clientId: "infra-topics",
    brokers: brokerList,
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  await admin.connect();
  const result = { created: [], grown: [], unchanged: [] };
  try {
    const existing = new Set(await admin.listTopics());
    const missing = wanted.filter((t) => !existing.has(t.topic));
    if (missing.length > 0) {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map(({ topic, partitions }) => ({
          topic,
          numPartitions: partitions,
          replicationFactor: 1,
        })),
      });
      for (const t of missing) {
        result.created.push(t);
        log(`created ${t.topic} (${t.partitions} partitions)`);
      }
    }
    const present = wanted.filter((t) => existing.has(t.topic));
    if (present.length > 0) {
      const meta = await admin.fetchTopicMetadata({
        topics: present.map((t) => t.topic),
      });
      const current = new Map(meta.topics.map((t) => [t.name, t.partitions.length]));
      const grow = [];
      for (const t of present) {
        const have = current.get(t.topic) ?? 0;
        if (have < t.partitions) grow.push({ topic: t.topic, count: t.partitions, from: have });
        else result.unchanged.push({ ...t, actual: have });
      }
      if (grow.length > 0) {
        await admin.createPartitions({
          topicPartitions: grow.map(({ topic, count }) => ({ topic, count })),
        });
        for (const g of grow) {
          result.grown.push({
            topic: g.topic,
            partitions: g.count,
            from: g.from,
          });
          log(`grew ${g.topic} from ${g.from} to ${g.count} partitions`);
        }
      }
    }
  } finally {
    await admin.disconnect();
  }
  return result;
}
