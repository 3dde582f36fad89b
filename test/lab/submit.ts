/**
 * Submits a message to a lab node's SMTP listener (plain SMTP, no TLS, no AUTH: 127.0.0.0/8 is in
 * the node's mynetworks, and [::1]/128 for a node listening on ::1), like an application relaying
 * through the node would. Pass the node itself: its smtpHost is where the listener is.
 */
import nodemailer from 'nodemailer';
import { LOOPBACK } from './util.js';

export interface SubmitTarget {
  smtpPort: number;
  smtpHost?: string;
}

export interface SubmitOptions {
  from: string;
  to: string[];
  subject?: string;
  body?: string;
  /** Extra headers, e.g. { 'X-Lab-Case': 'a' }. */
  headers?: Record<string, string>;
  /** Message-ID to use (with angle brackets); default nodemailer's. */
  messageId?: string;
}

export interface SubmitResult {
  /** Postfix queue id parsed from `250 2.0.0 Ok: queued as <ID>`, undefined if the reply lacks it. */
  queueId: string | undefined;
  /** Message-ID header of the submitted message. */
  messageId: string;
  /** The node's final reply to DATA. */
  response: string;
  accepted: string[];
  rejected: string[];
}

/** Parses the queue id out of a `250 ... queued as ID` reply. */
export function queueIdFromReply(reply: string): string | undefined {
  return /queued as ([A-Za-z0-9]+)/.exec(reply)?.[1];
}

export async function sendMail(node: SubmitTarget, opts: SubmitOptions): Promise<SubmitResult> {
  const transport = nodemailer.createTransport({
    host: node.smtpHost ?? LOOPBACK,
    port: node.smtpPort,
    secure: false,
    ignoreTLS: true,
    name: 'lab-client.test', // EHLO name; avoids os.hostname()
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 20_000,
  });
  try {
    const info = await transport.sendMail({
      from: opts.from,
      to: opts.to,
      subject: opts.subject ?? 'lab message',
      text: opts.body ?? 'Hello from the relayplane lab.\n',
      headers: opts.headers,
      messageId: opts.messageId,
      envelope: { from: opts.from, to: opts.to },
    });
    const addr = (a: string | { address: string }) => (typeof a === 'string' ? a : a.address);
    return {
      queueId: queueIdFromReply(info.response),
      messageId: info.messageId,
      response: info.response,
      accepted: info.accepted.map(addr),
      rejected: info.rejected.map(addr),
    };
  } finally {
    transport.close();
  }
}
