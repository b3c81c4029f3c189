// The model's chat template: the Jinja `chat_template` of a Hugging Face folder (chat_template.jinja,
// chat_template.json or tokenizer_config.json, in that order), rendered by @huggingface/jinja with
// the variables transformers passes (messages, add_generation_prompt, bos_token, eos_token).
// Without one, llava-hf's LLaVA-1.5 template (LLAVA_15_CHAT_TEMPLATE) is used:
//   "[system ]USER: <image>\n{text} ASSISTANT: {answer} USER: {text} ASSISTANT:"
import { Template } from '@huggingface/jinja';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readRegularFileSync, utf8Text } from './files.js';
import { parseStrictJson } from '../weights/strict-json.js';

/** llava-hf/llava-1.5-7b-hf's `chat_template` (processor chat_template.json), verbatim. */
export const LLAVA_15_CHAT_TEMPLATE =
  "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

/** A message as chat templates see it (transformers' processor format: content is a list of parts). */
export interface TemplateMessage {
  role: string;
  content: Array<{ type: 'text'; text: string } | { type: 'image' } | { type: 'video' }>;
}

/** Largest template file read (bytes). */
const MAX_TEMPLATE_BYTES = 1024 * 1024;

export class ChatTemplate {
  private readonly template: Template;

  /** `origin` names where the source came from, in error messages. */
  constructor(
    readonly source: string,
    readonly origin: string,
  ) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new Error(`${origin}: cannot parse the chat template (${(e as Error).message.split('\n')[0]})`);
    }
  }

  render(messages: TemplateMessage[], specialTokens: { bos_token?: string; eos_token?: string } = {}, addGenerationPrompt = true): string {
    try {
      return this.template.render({
        messages,
        add_generation_prompt: addGenerationPrompt,
        ...specialTokens,
      });
    } catch (e) {
      throw new Error(`chat template (${this.origin}): ${(e as Error).message.split('\n')[0]}`);
    }
  }
}

/** The LLaVA-1.5 fallback. */
export const LLAVA_15_TEMPLATE = new ChatTemplate(LLAVA_15_CHAT_TEMPLATE, 'the built-in LLaVA-1.5 template');

function jsonObject(path: string): Record<string, unknown> {
  const label = `'${path}'`;
  const json = parseStrictJson(utf8Text(readRegularFileSync(path, label, MAX_TEMPLATE_BYTES * 256), label), label);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${label}: not a JSON object`);
  return json as Record<string, unknown>;
}

/** A `chat_template` value: a string, or transformers' list of named templates (the 'default' one, else the first). */
function templateText(value: unknown, origin: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value as Array<{ name?: unknown; template?: unknown }>;
    const chosen = named.find((t) => t?.name === 'default') ?? named[0];
    if (typeof chosen?.template === 'string') return chosen.template;
  }
  throw new Error(`${origin}: chat_template must be a string or a list of { name, template }`);
}

/** The chat template of a model folder, or undefined when it has none. */
export function readChatTemplate(dir: string): ChatTemplate | undefined {
  const jinja = join(dir, 'chat_template.jinja');
  if (existsSync(jinja)) return new ChatTemplate(utf8Text(readRegularFileSync(jinja, `'${jinja}'`, MAX_TEMPLATE_BYTES), `'${jinja}'`), jinja);
  for (const file of ['chat_template.json', 'tokenizer_config.json']) {
    const path = join(dir, file);
    if (!existsSync(path)) continue;
    const text = templateText(jsonObject(path).chat_template, `'${path}'`);
    if (text !== undefined) return new ChatTemplate(text, path);
  }
  return undefined;
}
