/**
 * A hostile relay for credential tests, built on the npm `smtp-server` package: no TLS, AUTH over
 * the plain connection, and every AUTH refused with a 535 that echoes what the client sent (the
 * raw AUTH lines, base64 as received) and what the relay decoded from them (username and secret).
 * Listens on 127.0.0.1 only.
 */
import type { AddressInfo, Socket } from 'node:net';
import { SMTPServer } from 'smtp-server';

export interface EchoRelay {
  port: number;
  /** What each AUTH attempt carried, decoded by smtp-server. */
  attempts: Array<{ method: string; username: string; password: string }>;
  close(): Promise<void>;
}

export async function startEchoRelay(method: 'PLAIN' | 'LOGIN'): Promise<EchoRelay> {
  // The raw lines each client connection sent, by its port (the session knows its remotePort).
  const received = new Map<number, string>();
  const attempts: EchoRelay['attempts'] = [];
  const server = new SMTPServer({
    authMethods: [method],
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onAuth(auth, session, callback) {
      attempts.push({ method: auth.method, username: auth.username ?? '', password: auth.password ?? '' });
      // After this turn: the raw listener below sees the same data event after smtp-server's parser.
      setImmediate(() => {
        const raw = received.get(session.remotePort) ?? '';
        const sent = raw.slice(raw.indexOf('AUTH')).split(/\r?\n/).filter(Boolean).join(' ');
        const error = Object.assign(
          new Error(`5.7.8 refused: you sent ${sent}; user ${auth.username} secret ${auth.password}`),
          { responseCode: 535 },
        );
        callback(error);
      });
    },
  });
  server.server.on('connection', (socket: Socket) => {
    const port = socket.remotePort ?? 0;
    socket.on('data', (chunk: Buffer) => received.set(port, (received.get(port) ?? '') + chunk.toString('utf8')));
    socket.on('close', () => received.delete(port));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.server.address() as AddressInfo;
  return { port, attempts, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
