/**
 * A conditional UpdateItem: SET of the defined changes, REMOVE of the listed fields, version + 1 and
 * updatedAt, on the condition that the item exists and every added condition holds.
 */
export class Update {
  readonly #names: Record<string, string> = {};
  readonly #values: Record<string, unknown> = {};
  readonly #sets: string[] = [];
  readonly #removals: string[] = [];
  readonly #conditions = ['attribute_exists(pk)'];

  constructor(changes: object, remove: readonly string[], now: number) {
    this.#sets.push(`${this.name('version')} = ${this.name('version')} + ${this.value('one', 1)}`);
    this.#sets.push(`${this.name('updatedAt')} = ${this.value('now', now)}`);
    for (const [field, value] of Object.entries(changes)) {
      // DynamoDB refuses an update that both sets and removes a path; removal wins, as in memory.
      if (value === undefined || remove.includes(field)) continue;
      this.#sets.push(`${this.name(field)} = ${this.value(`set_${field}`, value)}`);
    }
    for (const field of remove) this.#removals.push(this.name(field));
  }

  name(field: string): string {
    this.#names[`#${field}`] = field;
    return `#${field}`;
  }

  value(placeholder: string, value: unknown): string {
    this.#values[`:${placeholder}`] = value;
    return `:${placeholder}`;
  }

  condition(expression: string): void {
    this.#conditions.push(expression);
  }

  expressions() {
    const removal = this.#removals.length > 0 ? ` REMOVE ${this.#removals.join(', ')}` : '';
    return {
      UpdateExpression: `SET ${this.#sets.join(', ')}${removal}`,
      ConditionExpression: this.#conditions.join(' AND '),
      ExpressionAttributeNames: this.#names,
      ExpressionAttributeValues: this.#values,
    };
  }
}
