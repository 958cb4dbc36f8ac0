import { Code, ConnectError } from "@connectrpc/connect";
import { PiiError } from "./cipher.js";

/** A sealed value that does not open: the data was altered or the key is missing. Never echo it. */
export function mapPii<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof PiiError) {
      throw new ConnectError(`stored personal data does not open: ${e.message}`, Code.DataLoss);
    }
    throw e;
  }
}
