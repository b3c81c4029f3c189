// JSON helpers for untrusted files: errors that never quote the input (V8's JSON.parse messages
// quote its first characters, which leaks a file's contents through a symlink), and a strict scan
// that JSON.parse does not do: duplicate keys (JSON.parse silently keeps the last one), a leading
// BOM, and number literals that are not plain non-negative integers (the safetensors spec stores
// offsets and shapes as u64: `25600.0`, `2.56e4` and `-0` are not integers there).

/** JSON.parse; on failure throws `${label}: not valid JSON (syntax error at position N)`. */
export function parseJsonText(text: string, label: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const m = /position (\d+)/.exec(e instanceof Error ? e.message : '');
    throw new Error(`${label}: not valid JSON (syntax error${m ? ` at position ${m[1]}` : ''})`);
  }
}

export interface StrictJsonOptions {
  /** Every number literal must be a plain non-negative integer (`0` or `[1-9][0-9]*`). */
  integersOnly?: boolean;
}

/**
 * Parses `text` strictly: no BOM, no duplicate keys in any object, and (with integersOnly) only
 * non-negative integer literals. Errors name `label` and the key path, never the file's text.
 */
export function parseStrictJson(text: string, label: string, options: StrictJsonOptions = {}): unknown {
  if (text.charCodeAt(0) === 0xfeff) throw new Error(`${label}: starts with a byte order mark (BOM), which is not allowed`);
  const value = parseJsonText(text, label);
  scan(text, label, options);
  return value;
}

/** Walks syntactically valid JSON text (JSON.parse accepted it). */
function scan(text: string, label: string, options: StrictJsonOptions): void {
  let i = 0;
  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\n' || text[i] === '\r' || text[i] === '\t')) i++;
  };
  const str = (): string => {
    const start = i;
    i++; // opening quote
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const printable = (path: string[]) => (path.length ? path.map((p) => (p.length > 60 ? `${p.slice(0, 57)}...` : p)).join('.') : 'top level');
  const value = (path: string[]): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        const key = str();
        if (seen.has(key)) throw new Error(`${label}: duplicate key '${printable([...path, key])}'`);
        seen.add(key);
        ws();
        i++; // ':'
        value([...path, key]);
        ws();
        if (text[i++] === '}') return;
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (let k = 0; ; k++) {
        value([...path, String(k)]);
        ws();
        if (text[i++] === ']') return;
      }
    } else if (c === '"') {
      str();
    } else if (c === 't' || c === 'n') {
      i += 4;
    } else if (c === 'f') {
      i += 5;
    } else {
      const start = i;
      while (i < text.length && /[-+0-9.eE]/.test(text[i])) i++;
      const literal = text.slice(start, i);
      if (options.integersOnly && !/^(0|[1-9][0-9]*)$/.test(literal)) {
        throw new Error(`${label}: ${printable(path)} must be a non-negative integer written without sign, fraction or exponent`);
      }
    }
  };
  value([]);
}
