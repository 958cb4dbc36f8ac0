import { useEffect, useState } from "react";

/** Hash routes: #/customers, #/customers/<id>, #/lines/<subscription id>, #/top, #/templates[/<id>], #/billing. */
export type Route =
  | { page: "customers" }
  | { page: "customer"; customerId: string }
  | { page: "line"; subscriptionId: string }
  | { page: "templates" }
  | { page: "billing" }
  | { page: "top" }
  | { page: "template"; templateId: string };

export function parse(hash: string): Route {
  const [, page, raw] = hash.replace(/^#/, "").split("/");
  let id: string | undefined;
  try {
    id = raw === undefined ? undefined : decodeURIComponent(raw);
  } catch {
    return { page: "customers" }; // a malformed address: the start page, not a blank one
  }
  if (page === "customers" && id) return { page: "customer", customerId: id };
  if (page === "lines" && id) return { page: "line", subscriptionId: id };
  if (page === "billing") return { page: "billing" };
  if (page === "top") return { page: "top" };
  if (page === "templates") return id ? { page: "template", templateId: id } : { page: "templates" };
  return { page: "customers" };
}

export function href(r: Route): string {
  switch (r.page) {
    case "customer":
      return `#/customers/${encodeURIComponent(r.customerId)}`;
    case "line":
      return `#/lines/${encodeURIComponent(r.subscriptionId)}`;
    case "templates":
      return "#/templates";
    case "billing":
      return "#/billing";
    case "top":
      return "#/top";
    case "template":
      return `#/templates/${encodeURIComponent(r.templateId)}`;
    default:
      return "#/customers";
  }
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(window.location.hash));
  useEffect(() => {
    const on = () => setRoute(parse(window.location.hash));
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}
