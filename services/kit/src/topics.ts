import topics from "./topics.json" with { type: "json" };

/** The Kafka topics of DESIGN.md; partition counts in topics.json, overridable at infra:up time. */
export const TOPICS = {
  usageEvents: "usage.events",
  notificationRequests: "notification.requests",
  domainEvents: "domain.events",
  messageResults: "message.results",
} as const;

export type TopicName = (typeof TOPICS)[keyof typeof TOPICS];

export const TOPIC_PARTITIONS: Record<TopicName, number> = Object.fromEntries(
  Object.entries(topics).map(([name, t]) => [name, t.partitions]),
) as Record<TopicName, number>;
