// Pieces of the CLI kept out of cli.ts: `illava chat` (an interactive multi-turn conversation on
// stdin) and the `--json` outputs of `generate` and `info`.
import { createInterface } from 'node:readline';
import { resolve } from 'node:path';
import type { GenerateOutput, LlavaModel } from './llava.js';
import { probeChatImages, type ChatContentPart, type ChatMessage } from './conversation.js';

/** generate --json: everything the text output shows, as one object. */
export function generateJson(model: LlavaModel, out: GenerateOutput) {
  return {
    text: out.text,
    tokenIds: out.tokenIds,
    promptIds: out.promptIds,
    finishReason: out.finishReason,
    sequenceLength: out.sequenceLength,
    merges: out.merges.map((m) => ({ patches: m.patches, vision: m.vision, language: m.language, tokens: m.tokens })),
    timings: out.timings,
    kvCacheBytes: out.kvCacheBytes,
    backend: model.backend.name,
  };
}

/** info --json. */
export function infoJson(model: LlavaModel) {
  const c = model.config;
  return {
    model: model.dir,
    architecture: c.modelType === 'llava' ? 'llava-1.5' : c.modelType.replace('_', '-'),
    vision: { layers: c.vision.numLayers, hiddenSize: c.vision.hiddenSize, heads: c.vision.numHeads, imageSize: c.vision.imageSize, patchSize: c.vision.patchSize, patches: Math.floor(c.vision.imageSize / c.vision.patchSize) ** 2, featureLayer: c.visionFeatureLayer, featureSelectStrategy: c.visionFeatureSelectStrategy },
    decoder: { layers: c.text.numLayers, hiddenSize: c.text.hiddenSize, heads: c.text.numHeads, kvHeads: c.text.numKvHeads, intermediateSize: c.text.intermediateSize, vocabSize: c.text.vocabSize, contextLength: c.text.maxPositionEmbeddings },
    parameters: model.parameterCount(),
    storedDtypes: model.storedDtypes(),
    backend: { name: model.backend.name, reason: model.backend.reason },
    weights: { residency: model.residency.residency, reason: model.residency.reason, threads: model.threads },
    formats: { ...model.layout.formats, packedBytes: model.layout.packedBytes },
    chatTemplate: model.chatTemplate?.origin ?? null,
  };
}

export interface ChatReplOptions {
  /** Images attached to the first message. */
  images: string[];
  system?: string;
  quiet?: boolean;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
}

const HELP = 'type a message and press Enter; /image PATH attaches an image to your next message, /reset starts over, /exit (or Ctrl-D) ends';

/**
 * Reads messages line by line from stdin and streams each answer to stdout (one line per answer).
 * The conversation grows with every turn; a failed turn (a bad image, too long for the context)
 * prints one error line on stderr and is left out of it.
 */
export async function runChatRepl(model: LlavaModel, opts: ChatReplOptions): Promise<void> {
  const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  const rl = createInterface({ input: process.stdin, output: interactive ? process.stdout : undefined, terminal: interactive });
  const info = (line: string) => {
    if (!opts.quiet) process.stderr.write(`${line}\n`);
  };
  const start = (): ChatMessage[] => (opts.system ? [{ role: 'system', content: opts.system }] : []);
  let messages = start();
  let pending = opts.images.map((p) => resolve(p));
  info(`chat with ${model.dir}: ${HELP}`);
  if (interactive) rl.prompt();
  for await (const raw of rl) {
    const line = raw.trim();
    if (line === '/exit' || line === '/quit') break;
    if (line === '' || line.startsWith('/')) {
      if (line === '/reset') {
        messages = start();
        pending = [];
        info('(conversation cleared)');
      } else if (line === '/image' || line.startsWith('/image ')) {
        const path = resolve(line.slice(6).trim());
        try {
          if (line.slice(6).trim() === '') throw new Error('/image needs a file: /image PATH');
          await probeChatImages(model, [path]);
          pending.push(path);
          info(`(image ${path} attached to your next message)`);
        } catch (e) {
          process.stderr.write(`illava: ${(e as Error).message}\n`);
        }
      } else if (line === '/help') {
        info(HELP);
      } else if (line !== '') {
        process.stderr.write(`illava: unknown command '${line.split(' ')[0]}' (${HELP})\n`);
      }
      if (interactive) rl.prompt();
      continue;
    }
    const content: string | ChatContentPart[] = pending.length ? [...pending.map((url): ChatContentPart => ({ type: 'image_url', image_url: { url } })), { type: 'text', text: line }] : line;
    const user: ChatMessage = { role: 'user', content };
    try {
      const out = await model.chat([...messages, user], {
        maxNewTokens: opts.maxNewTokens,
        temperature: opts.temperature,
        topK: opts.topK,
        topP: opts.topP,
        seed: opts.seed,
        onToken: (text) => process.stdout.write(text),
      });
      process.stdout.write('\n');
      messages.push(user, out.message);
      pending = [];
      const images = out.merges.map((m) => `${m.patches} -> ${m.tokens}`).join(', ');
      info(`(${out.sequenceLength.input} prompt tokens${images ? `, image tokens ${images}` : ''}, ${out.tokenIds.length} generated, ${out.timings.totalMs.toFixed(0)} ms)`);
    } catch (e) {
      process.stderr.write(`illava: ${(e as Error).message}\n`);
    }
    if (interactive) rl.prompt();
  }
  rl.close();
}
