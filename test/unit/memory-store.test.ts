import { describeStateStore } from '../contract/state-store.contract';
import { InMemoryStateStore } from '../helpers/in-memory-state-store';

describeStateStore('in memory', async () => new InMemoryStateStore());
