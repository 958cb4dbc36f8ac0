import { Alert, Badge, Table } from "@mantine/core";
import type { ReactNode } from "react";
import type { Problem } from "./api.js";

/** A service's refusal as a readable message on the page (fields' reasons go next to their fields). */
export function ProblemAlert({ problem, fields = false }: { problem: Problem | undefined; fields?: boolean }) {
  if (!problem) return null;
  return (
    <Alert color="red" role="alert">
      {problem.message}
      {fields &&
        Object.entries(problem.fields).map(([f, why]) => (
          <div key={f}>
            {f}: {why}
          </div>
        ))}
    </Alert>
  );
}

/** A table that scrolls sideways on narrow screens, with a header row. */
export function DataTable({ head, testId, children }: { head: string[]; testId: string; children: ReactNode }) {
  return (
    <Table.ScrollContainer minWidth={360}>
      <Table striped data-testid={testId}>
        <Table.Thead>
          <Table.Tr>
            {head.map((h) => (
              <Table.Th key={h}>{h}</Table.Th>
            ))}
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>{children}</Table.Tbody>
      </Table>
    </Table.ScrollContainer>
  );
}

/** An alert level (50 / 80 / 100 %) as a badge, coloured as the gauge is past it. */
export function LevelBadge({ level, size }: { level: number; size?: "sm" }) {
  return (
    <Badge size={size} color={level >= 100 ? "red" : level >= 80 ? "orange" : "yellow"}>
      {level}%
    </Badge>
  );
}
