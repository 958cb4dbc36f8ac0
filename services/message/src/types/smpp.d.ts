// The parts of the `smpp` package (no published types) this unit and its tests use.
declare module "smpp" {
  import type { EventEmitter } from "node:events";
  import type { Server as NetServer } from "node:net";

  export interface PDU {
    command: string;
    command_status: number;
    sequence_number: number;
    message_id?: string;
    esm_class?: number;
    data_coding?: number;
    destination_addr?: string;
    source_addr?: string;
    short_message?: { message?: string | Buffer; udh?: Buffer[] } | Buffer | string;
    receipted_message_id?: string;
    system_id?: string;
    password?: string;
    [field: string]: unknown;
    response(options?: Record<string, unknown>): PDU;
    isResponse(): boolean;
  }

  export interface Session extends EventEmitter {
    socket: import("node:net").Socket;
    send(pdu: PDU, onResponse?: (pdu: PDU) => void, onSent?: () => void): boolean;
    close(cb?: () => void): void;
    destroy(cb?: () => void): void;
    pause(): void;
    resume(): void;
    bind_transceiver(options: Record<string, unknown>, cb?: (pdu: PDU) => void): boolean;
    submit_sm(options: Record<string, unknown>, cb?: (pdu: PDU) => void): boolean;
    deliver_sm(options: Record<string, unknown>, cb?: (pdu: PDU) => void): boolean;
    unbind(options?: Record<string, unknown>, cb?: (pdu: PDU) => void): boolean;
    enquire_link(options?: Record<string, unknown>, cb?: (pdu: PDU) => void): boolean;
  }

  export interface Server extends NetServer {
    sessions?: Session[];
  }

  export function connect(options: { url: string; auto_enquire_link_period?: number; [k: string]: unknown }): Session;
  export function createServer(options: Record<string, unknown>, listener?: (session: Session) => void): Server;
  export function createServer(listener?: (session: Session) => void): Server;

  export const ESME_ROK: number;
  export const ESME_RSYSERR: number;
  export const ESME_RINVDSTADR: number;
  export const ESME_RBINDFAIL: number;
  export const ESME_RTHROTTLED: number;
  export const ESME_RMSGQFUL: number;
  export const ESME_RINVSRCADR: number;
  export const ESME_RINVMSGLEN: number;
  export const ESM_CLASS: { MC_DELIVERY_RECEIPT: number; UDH_INDICATOR: number; [k: string]: number };
  export const ENCODING: Record<string, number>;

  const smpp: {
    connect: typeof connect;
    createServer: typeof createServer;
    [k: string]: unknown;
  };
  export default smpp;
}
