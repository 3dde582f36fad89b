/**
 * The plan a deploy foresees before read-node answers (src/deploy/config-check-ahead.ts): the one
 * from the live release's config to the next bundle's, the same planConfig finds on a node that
 * still holds what that release left. Pure; the lab test (config-check-ahead.test.ts) runs it on
 * a real node.
 */
import { describe, expect, it } from 'vitest';
import { checkedAhead, configCheckAhead, foreseenPlan } from '../../src/deploy/config-check-ahead.js';
import { nodeLayout } from '../../src/deploy/layout.js';
import { desiredConfig, planConfig, planIsEmpty, type LiveConfig } from '../../src/deploy/postfix-config.js';
import { buildBundle, service, type Route } from './bundles.js';

const layout = nodeLayout('/etc/postfix');
const routes: Route[] = [{ domain: 'a.test', nexthop: '[127.0.0.1]:2525', user: 'u1', password: 'pw' }];
const limited = service('rp_limited', 'smtp', { smtp_destination_concurrency_limit: '4' });

/** A node's config as `bundle`'s release left it, with the admin's own settings beside ours. */
function leftBy(bundle: ReturnType<typeof buildBundle>): LiveConfig {
  const left = desiredConfig(bundle, layout.liveDir);
  return {
    params: new Map([['myhostname', 'node.example'], ...left.params]),
    services: new Map([
      ['smtp/inet', 'smtp inet n - y - - smtpd'],
      ...left.services.map((s) => [s.key, s.fields] as const),
    ]),
    serviceParams: new Map(left.services.map((s) => [s.key, new Map(s.params)])),
    managedParams: Object.keys(bundle.mainCf).sort(),
  };
}

describe('the plan foreseen from the live release', () => {
  const base = buildBundle(routes, { mainCf: { smtp_connect_timeout: '17s', smtp_helo_timeout: '41s' } });

  it('is the plan read-node finds on a node as the live release left it', () => {
    const next = buildBundle(routes, { mainCf: { smtp_connect_timeout: '19s' }, masterCf: [limited] });
    const desired = desiredConfig(next, layout.liveDir);
    const foreseen = foreseenPlan(base, desired, layout.liveDir);
    expect(foreseen).toEqual(planConfig(desired, leftBy(base)));
    expect(foreseen.setParams).toEqual([['smtp_connect_timeout', '19s']]);
    expect(foreseen.removeParams).toEqual(['smtp_helo_timeout']);
    expect(foreseen.writeServices.map((s) => s.key)).toEqual(['rp_limited/unix']);
    expect(checkedAhead(foreseen, planConfig(desired, leftBy(base)))).toBe('same-plan');
  });

  it('differs from the plan found on a node edited by hand since', () => {
    const next = buildBundle(routes, { mainCf: { smtp_connect_timeout: '19s', smtp_data_done_timeout: '700s' } });
    const desired = desiredConfig(next, layout.liveDir);
    const edited = leftBy(base);
    edited.params.set('smtp_data_done_timeout', '700s');
    const found = planConfig(desired, edited);
    expect(checkedAhead(foreseenPlan(base, desired, layout.liveDir), found)).toBe('other-plan');
    expect(checkedAhead(undefined, found)).toBe('none');
  });

  it('runs no checks ahead for a change of tables only', () => {
    const next = buildBundle(
      [...routes, { domain: 'b.test', nexthop: '[127.0.0.1]:2525', user: 'u2', password: 'pw' }],
      {
        mainCf: { smtp_connect_timeout: '17s', smtp_helo_timeout: '41s' },
      },
    );
    const desired = desiredConfig(next, layout.liveDir);
    expect(planIsEmpty(foreseenPlan(base, desired, layout.liveDir))).toBe(true);
    expect(configCheckAhead({ base, desired, layout, staging: `${layout.releases}/x.tmp-1` })).toBeUndefined();
  });

  it('checks in the staging dir, in the background, and waits for them before the frame answers', () => {
    const next = buildBundle(routes, { mainCf: { smtp_connect_timeout: '19s' } });
    const desired = desiredConfig(next, layout.liveDir);
    const staging = `${layout.releases}/${next.version}.tmp-0a1b`;
    const ahead = configCheckAhead({ base, desired, layout, staging })!;
    expect(ahead.plan.setParams).toEqual([['smtp_connect_timeout', '19s']]);
    expect(ahead.script.start).toContain(`${staging}/.relayplane/check/before`);
    expect(ahead.script.start).toMatch(/& rp_config=\$!/);
    expect(ahead.script.finish).toMatch(/wait "\$rp_config"/);
    expect(ahead.script.finish).toContain(`${staging}/.relayplane/check/check.rc`);
  });
});
