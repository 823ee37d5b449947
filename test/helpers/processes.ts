import { readdirSync, readFileSync } from 'node:fs';

interface ProcessInfo {
  pid: number;
  parent: number;
  command: string;
}

function processTable(): ProcessInfo[] {
  const table: ProcessInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The command name is in parentheses and may hold spaces; the parent pid is the 2nd field after it.
      const afterName = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const command = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      table.push({ pid: Number(entry), parent: Number(afterName[1]), command });
    } catch {
      // The process ended while the table was read.
    }
  }
  return table;
}

/** Every live process descended from `root` (zombies excluded: they hold no resources but a pid). */
export function descendants(root: number = process.pid): ProcessInfo[] {
  const table = processTable().filter((info) => info.command !== '');
  const found: ProcessInfo[] = [];
  const parents = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const info of table) {
      if (parents.has(info.parent) && !parents.has(info.pid)) {
        parents.add(info.pid);
        found.push(info);
        grew = true;
      }
    }
  }
  return found;
}
