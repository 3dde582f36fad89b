/**
 * Waiting for a lab message to reach a smart host on events, not on a clock: the message arriving
 * resolves, the node logging it bounced or deferred rejects at once; HANG_GUARD_MS only stops a hang.
 */
import { readDeliveries, type LogTarget } from './log.js';
import type { ReceivedMessage, SmartHost } from './smart-host.js';
import { HANG_GUARD_MS, sleep } from './util.js';

export async function waitForDelivery(
  node: LogTarget,
  sent: { queueId: string | undefined; messageId: string },
  host: SmartHost,
): Promise<ReceivedMessage> {
  let done = false;
  const refused = async (): Promise<never> => {
    for (;;) {
      const entry = (await readDeliveries(node)).find((e) => e.queueId === sent.queueId && e.status !== 'sent');
      if (done) return new Promise<never>(() => {});
      if (entry !== undefined)
        throw new Error(
          `${sent.queueId} was ${entry.status} on ${node.maillogPath} instead of reaching ${host.name}: ${entry.statusText}`,
        );
      await sleep(50);
    }
  };
  try {
    return await Promise.race([
      host.waitFor((m) => m.messageId === sent.messageId, HANG_GUARD_MS),
      ...(sent.queueId === undefined ? [] : [refused()]),
    ]);
  } finally {
    done = true;
  }
}
