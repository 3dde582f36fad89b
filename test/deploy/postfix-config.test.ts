import { describe, expect, it } from 'vitest';
import { restartParams, type ConfigPlan } from '../../src/deploy/postfix-config.js';

const plan = (parts: Partial<ConfigPlan>): ConfigPlan => ({
  setParams: [],
  removeParams: [],
  writeServices: [],
  removeServices: [],
  ...parts,
});

describe('restartParams (what `postfix reload` does not apply)', () => {
  it('names inet_protocols and inet_interfaces when set or removed, nothing else', () => {
    expect(
      restartParams(
        plan({
          setParams: [
            ['inet_protocols', 'all'],
            ['relayhost', ''],
          ],
        }),
      ),
    ).toEqual(['inet_protocols']);
    expect(restartParams(plan({ removeParams: ['inet_interfaces'] }))).toEqual(['inet_interfaces']);
    expect(
      restartParams(plan({ setParams: [['smtp_address_preference', 'ipv6']], removeParams: ['transport_maps'] })),
    ).toEqual([]);
  });
});
