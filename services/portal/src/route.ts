import { useEffect, useState } from "react";

/** Hash routes: #/customers, #/customers/<id>, #/lines/<subscription id>. */
export type Route =
  | { page: "customers" }
  | { page: "customer"; customerId: string }
  | { page: "line"; subscriptionId: string };

export function parse(hash: string): Route {
  const [, page, id] = hash.replace(/^#/, "").split("/");
  if (page === "customers" && id) return { page: "customer", customerId: decodeURIComponent(id) };
  if (page === "lines" && id) return { page: "line", subscriptionId: decodeURIComponent(id) };
  return { page: "customers" };
}

export const href = (r: Route): string =>
  r.page === "customer"
    ? `#/customers/${encodeURIComponent(r.customerId)}`
    : r.page === "line"
      ? `#/lines/${encodeURIComponent(r.subscriptionId)}`
      : "#/customers";

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(window.location.hash));
  useEffect(() => {
    const on = () => setRoute(parse(window.location.hash));
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}
