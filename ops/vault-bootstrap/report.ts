import type { BootstrapAction, BootstrapReport } from './spec';

const ACTION_WORDS: Record<BootstrapAction, [done: string, planned: string]> = {
  created: ['created', 'would create'],
  updated: ['updated', 'would update'],
  unchanged: ['unchanged', 'unchanged'],
  skipped: ['skipped', 'would skip'],
  pending: ['pending', 'pending'],
  'to-delete': ['to delete', 'to delete'],
};

/** The report as an operator reads it: one line per item, then the HCL of every policy written. */
export function renderBootstrapReport(report: BootstrapReport): string {
  const lines = [report.dryRun ? 'vault-bootstrap (dry run: nothing was changed)' : 'vault-bootstrap'];
  const width = Math.max(
    ...Object.values(ACTION_WORDS).map(([done, planned]) => Math.max(done.length, planned.length)),
  );
  for (const item of report.items) {
    const word = ACTION_WORDS[item.action][report.dryRun ? 1 : 0];
    lines.push(`  ${word.padEnd(width)}  ${item.item}${item.detail ? `  (${item.detail})` : ''}`);
  }
  for (const item of report.items) {
    if (item.hcl !== undefined && (item.action === 'created' || item.action === 'updated')) {
      lines.push('', `# ${item.item} — ${report.dryRun ? 'would write' : 'written'}:`, item.hcl);
    }
    if (item.csrPem !== undefined)
      lines.push('', `# ${item.item} — CSR to sign with the external root:`, item.csrPem.trim());
  }
  return `${lines.join('\n')}\n`;
}
